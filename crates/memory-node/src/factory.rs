//! Put results built by a JavaScript factory.
//!
//! napi-rs turns a `#[napi(object)]` into a JS object with `napi_define_properties`, which
//! creates every property name from UTF-8 and defines each property on V8's slow path: perf
//! put that at about 4.5 µs of event loop per 7-field put result, a fifth of a whole put. A
//! factory registered once from JavaScript (`setPutResultFactory`) takes the fields as
//! arguments and returns an object literal instead, which V8 builds with one hidden class.
//! Without a factory for the calling environment the plain object conversion is used.

use std::cell::Cell;
use std::ptr;

use memory_core::store::PutOutcome;
use napi::bindgen_prelude::*;
use napi::sys;

use crate::PutResult;

thread_local! {
    /// The factory of this thread's environment (an environment lives on one thread).
    static PUT_RESULT: Cell<Option<(sys::napi_env, sys::napi_ref)>> = const { Cell::new(None) };
}

/// Register `f(id, seq, significance, timestamp, associations, existing, namespaceTotal)` as
/// this environment's put-result factory (replacing an earlier one).
pub fn register(env: sys::napi_env, f: sys::napi_value) -> Result<()> {
    let mut r = ptr::null_mut();
    check_status!(unsafe { sys::napi_create_reference(env, f, 1, &mut r) })?;
    match PUT_RESULT.with(|c| c.replace(Some((env, r)))) {
        Some((old_env, old)) if old_env == env => {
            unsafe { sys::napi_delete_reference(env, old) };
        }
        _ => {
            // First registration for this environment: forget the factory when it goes away,
            // so that a later environment on this thread never sees a stale one.
            check_status!(unsafe { sys::napi_add_env_cleanup_hook(env, Some(forget), env.cast()) })?;
        }
    }
    Ok(())
}

unsafe extern "C" fn forget(env: *mut std::ffi::c_void) {
    PUT_RESULT.with(|c| {
        if c.get().is_some_and(|(e, _)| e == env.cast()) {
            c.set(None);
        }
    });
}

fn factory(env: sys::napi_env) -> Option<sys::napi_value> {
    let (e, r) = PUT_RESULT.with(|c| c.get())?;
    if e != env {
        return None;
    }
    let mut f = ptr::null_mut();
    let ok = unsafe { sys::napi_get_reference_value(env, r, &mut f) } == sys::Status::napi_ok;
    (ok && !f.is_null()).then_some(f)
}

/// One put's result as a JS value.
pub struct PutResultValue(pub PutOutcome);

impl ToNapiValue for PutResultValue {
    unsafe fn to_napi_value(env: sys::napi_env, val: Self) -> Result<sys::napi_value> {
        let o = val.0;
        let Some(f) = factory(env) else {
            let r = PutResult {
                id: o.id,
                seq: o.seq as i64,
                significance: o.significance as f64,
                timestamp: o.timestamp,
                associations: o.associations,
                existing: o.existing,
                namespace_total: o.namespace_total,
            };
            return unsafe { PutResult::to_napi_value(env, r) };
        };
        let args = unsafe {
            [
                String::to_napi_value(env, o.id)?,
                f64::to_napi_value(env, o.seq as f64)?,
                f64::to_napi_value(env, o.significance as f64)?,
                f64::to_napi_value(env, o.timestamp as f64)?,
                Vec::<String>::to_napi_value(env, o.associations)?,
                bool::to_napi_value(env, o.existing)?,
                u32::to_napi_value(env, o.namespace_total)?,
            ]
        };
        let mut recv = ptr::null_mut();
        check_status!(unsafe { sys::napi_get_undefined(env, &mut recv) })?;
        let mut out = ptr::null_mut();
        check_status!(unsafe { sys::napi_call_function(env, recv, f, args.len(), args.as_ptr(), &mut out) })?;
        Ok(out)
    }
}
