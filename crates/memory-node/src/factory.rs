//! Put results and memories built by JavaScript factories.
//!
//! napi-rs turns a `#[napi(object)]` into a JS object with `napi_define_properties`, which
//! creates every property name from UTF-8 and defines each property on V8's slow path: perf
//! put that at about 4.5 µs of event loop per 7-field put result, a fifth of a whole put,
//! and ~6 µs per memory of a `list`. A factory registered once from JavaScript
//! (`setPutResultFactory`, `setMemoryFactory`) takes the fields as arguments and returns an
//! object literal instead, which V8 builds with one hidden class. Without a factory for the
//! calling environment the plain object conversion is used.

use std::cell::Cell;
use std::ptr;
use std::thread::LocalKey;

use memory_core::store::{Memory as CoreMemory, PutOutcome};
use napi::bindgen_prelude::*;
use napi::sys;

use crate::types::{Memory, PutResult};

type Slot = Cell<Option<(sys::napi_env, sys::napi_ref)>>;

thread_local! {
    /// The factories of this thread's environment (an environment lives on one thread).
    static PUT_RESULT: Slot = const { Cell::new(None) };
    static MEMORY: Slot = const { Cell::new(None) };
}

/// Which factory.
#[derive(Clone, Copy)]
pub enum Kind {
    /// `(id, seq, significance, timestamp, associations, existing, namespaceTotal)`.
    PutResult,
    /// `(id, namespace, text, metadata, significance, timestamp, associations, seq,
    /// expiresAt, embedding, score)`, the last three `undefined` when absent.
    Memory,
}

fn slot(kind: Kind) -> &'static LocalKey<Slot> {
    match kind {
        Kind::PutResult => &PUT_RESULT,
        Kind::Memory => &MEMORY,
    }
}

/// Register `f` as this environment's factory of `kind` (replacing an earlier one).
/// Called from a `#[napi]` function: `env` is the calling thread's live environment and `f`
/// a value of it.
pub fn register(kind: Kind, env: sys::napi_env, f: sys::napi_value) -> Result<()> {
    let mut r = ptr::null_mut();
    // SAFETY: `env` is live and `f` belongs to it (see above); `r` is a valid out-pointer.
    check_status!(unsafe { sys::napi_create_reference(env, f, 1, &mut r) })?;
    match slot(kind).with(|c| c.replace(Some((env, r)))) {
        Some((old_env, old)) if old_env == env => {
            // SAFETY: `old` is the reference an earlier call made in this same environment
            // (checked), held only by the slot it was just taken out of, so it is live and
            // deleted exactly once.
            unsafe { sys::napi_delete_reference(env, old) };
        }
        _ => {
            // First registration for this environment: forget the factory when it goes away,
            // so that a later environment on this thread never sees a stale one.
            let hook = match kind {
                Kind::PutResult => forget_put_result,
                Kind::Memory => forget_memory,
            };
            // SAFETY: `env` is live; the hook is a plain function that only compares its
            // argument (never dereferences it), so passing `env` as that argument is sound
            // even after the environment is gone.
            check_status!(unsafe { sys::napi_add_env_cleanup_hook(env, Some(hook), env.cast()) })?;
        }
    }
    Ok(())
}

fn forget(kind: Kind, env: *mut std::ffi::c_void) {
    slot(kind).with(|c| {
        if c.get().is_some_and(|(e, _)| e == env.cast()) {
            c.set(None);
        }
    });
}

unsafe extern "C" fn forget_put_result(env: *mut std::ffi::c_void) {
    forget(Kind::PutResult, env);
}

unsafe extern "C" fn forget_memory(env: *mut std::ffi::c_void) {
    forget(Kind::Memory, env);
}

/// The factory of `kind` registered for `env` (a live environment, the caller's), if any.
fn factory(kind: Kind, env: sys::napi_env) -> Option<sys::napi_value> {
    let (e, r) = slot(kind).with(|c| c.get())?;
    if e != env {
        return None;
    }
    let mut f = ptr::null_mut();
    // SAFETY: `r` was created in `env` (checked above) and is still live: a slot's reference
    // is deleted only when `register` replaces it, and the slot is cleared when the
    // environment goes away. `f` is a valid out-pointer.
    let ok = unsafe { sys::napi_get_reference_value(env, r, &mut f) } == sys::Status::napi_ok;
    (ok && !f.is_null()).then_some(f)
}

/// One put's result as a JS value.
pub struct PutResultValue(pub PutOutcome);

impl ToNapiValue for PutResultValue {
    unsafe fn to_napi_value(env: sys::napi_env, val: Self) -> Result<sys::napi_value> {
        let o = val.0;
        let Some(f) = factory(Kind::PutResult, env) else {
            // SAFETY: `env` is the live environment this conversion runs in (the contract of
            // `to_napi_value`, which napi-rs calls on the JS thread).
            return unsafe { PutResult::to_napi_value(env, PutResult::from(o)) };
        };
        // SAFETY: as above: each value is created in `env`, on its thread.
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
        // SAFETY: `f` is the factory function of `env` and `args` are values of `env`.
        unsafe { call(env, f, &args) }
    }
}

/// Call `f` with `args` and `undefined` as `this`.
///
/// # Safety
/// On the thread of `env`, a live environment; `f` and `args` are values of it.
unsafe fn call(env: sys::napi_env, f: sys::napi_value, args: &[sys::napi_value]) -> Result<sys::napi_value> {
    let mut recv = ptr::null_mut();
    // SAFETY: `env` is live (the caller's contract); `recv` is a valid out-pointer.
    check_status!(unsafe { sys::napi_get_undefined(env, &mut recv) })?;
    let mut out = ptr::null_mut();
    // SAFETY: `env`, `f` and `args` as the caller promises; the pointer and length describe
    // the `args` slice, alive for the call; `out` is a valid out-pointer.
    check_status!(unsafe { sys::napi_call_function(env, recv, f, args.len(), args.as_ptr(), &mut out) })?;
    Ok(out)
}

/// `undefined` for `None` (napi-rs's `Option` conversion gives `null`).
///
/// # Safety
/// On the thread of `env`, a live environment.
unsafe fn opt<T: ToNapiValue>(env: sys::napi_env, v: Option<T>) -> Result<sys::napi_value> {
    match v {
        // SAFETY: `env` is live (the caller's contract).
        Some(v) => unsafe { T::to_napi_value(env, v) },
        None => {
            let mut u = ptr::null_mut();
            // SAFETY: `env` is live (the caller's contract); `u` is a valid out-pointer.
            check_status!(unsafe { sys::napi_get_undefined(env, &mut u) })?;
            Ok(u)
        }
    }
}

/// A memory as a JS value.
pub struct MemoryValue(pub CoreMemory);

impl ToNapiValue for MemoryValue {
    unsafe fn to_napi_value(env: sys::napi_env, val: Self) -> Result<sys::napi_value> {
        let Some(f) = factory(Kind::Memory, env) else {
            // SAFETY: `env` is the live environment this conversion runs in (the contract of
            // `to_napi_value`, which napi-rs calls on the JS thread).
            return unsafe { Memory::to_napi_value(env, Memory::from(val.0)) };
        };
        let m = val.0;
        // SAFETY: as above: each value is created in `env`, on its thread.
        let args = unsafe {
            [
                String::to_napi_value(env, m.id)?,
                String::to_napi_value(env, m.namespace)?,
                String::to_napi_value(env, m.text)?,
                String::to_napi_value(env, m.metadata)?,
                f64::to_napi_value(env, m.significance as f64)?,
                f64::to_napi_value(env, m.timestamp as f64)?,
                Vec::<String>::to_napi_value(env, m.associations)?,
                f64::to_napi_value(env, m.seq as f64)?,
                opt(env, m.expires_at.map(|t| t as f64))?,
                opt(env, m.embedding.map(Float32Array::new))?,
                opt(env, m.score.map(|s| s as f64))?,
            ]
        };
        // SAFETY: `f` is the factory function of `env` and `args` are values of `env`.
        unsafe { call(env, f, &args) }
    }
}
