//! Promises settled by the store's own threads, through one thread-safe function per JS thread.
//!
//! `Env::spawn_future` costs, per call, a thread-safe function (a libuv handle opened and
//! closed), a tokio task and two cross-thread wake-ups (writer → tokio worker → JS thread).
//! Stores complete in groups — one writer pass settles a whole group commit — so here the
//! store's thread pushes each result into a queue and wakes the JS thread only when that queue
//! was empty; the JS thread then settles every queued promise in one callback.
//!
//! The thread-safe function is referenced (keeps the event loop alive) only while some promise
//! is pending, so an idle process can still exit. An operation the store drops without calling
//! back settles as `unavailable` ("the store is closed") instead of hanging.

use std::cell::{Cell, RefCell};
use std::ffi::c_void;
use std::ptr;
use std::rc::Rc;
use std::sync::{Arc, Mutex};

use memory_core::store::Done;
use napi::bindgen_prelude::*;
use napi::sys;

type Job = Box<dyn FnOnce(sys::napi_env) + Send>;

struct Tsfn(sys::napi_threadsafe_function);
// SAFETY: `napi_call_threadsafe_function` may be called from any thread; the handle is only
// used under `Hub::state`'s lock and cleared (under that lock) when the environment goes away.
unsafe impl Send for Tsfn {}

struct HubState {
    tsfn: Option<Tsfn>,
    jobs: Vec<Job>,
    /// A call is queued on the thread-safe function and hasn't drained yet.
    scheduled: bool,
}

struct Hub {
    state: Mutex<HubState>,
}

impl Hub {
    /// From any thread: queue `job` for the JS thread. Dropped if the environment is gone.
    fn push(&self, job: Job) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let Some(tsfn) = st.tsfn.as_ref().map(|t| t.0) else { return };
        st.jobs.push(job);
        if !st.scheduled {
            st.scheduled = true;
            // Non-blocking with an unbounded queue: never waits.
            // SAFETY: callable from any thread. `tsfn` is live: it was read under the lock we
            // still hold, and `cleanup` clears it under this lock before the environment tears
            // the function down (cleanup hooks run newest first, and ours was added after the
            // function was created). `call_js` ignores the null data pointer.
            let status = unsafe { sys::napi_call_threadsafe_function(tsfn, ptr::null_mut(), sys::ThreadsafeFunctionCallMode::nonblocking) };
            if status != sys::Status::napi_ok {
                st.scheduled = false;
            }
        }
    }
}

/// JS-thread state: the hub of this thread's environment and the number of unsettled promises.
struct Local {
    hub: Arc<Hub>,
    tsfn: sys::napi_threadsafe_function,
    pending: Cell<usize>,
}

thread_local! {
    static LOCAL: RefCell<Option<Rc<Local>>> = const { RefCell::new(None) };
}

/// The thread-safe function's callback, on the JS thread: settle every queued promise.
unsafe extern "C" fn call_js(env: sys::napi_env, _js_cb: sys::napi_value, context: *mut c_void, _data: *mut c_void) {
    // SAFETY: `context` is the `Arc<Hub>` reference `local` handed to the function; it is
    // released only in `finalize`, after the last call of this callback, so the hub is alive.
    let hub = unsafe { &*(context as *const Hub) };
    let jobs = {
        let mut st = hub.state.lock().unwrap_or_else(|e| e.into_inner());
        st.scheduled = false;
        std::mem::take(&mut st.jobs)
    };
    // A null env means the function is being torn down: nothing can be settled any more.
    if env.is_null() {
        return;
    }
    for job in jobs {
        job(env);
    }
}

/// The thread-safe function's finalizer: release the context's reference to the hub.
unsafe extern "C" fn finalize(_env: sys::napi_env, _data: *mut c_void, hint: *mut c_void) {
    // SAFETY: `hint` is the context, the pointer `Arc::into_raw` made in `local`; Node calls
    // the finalizer once, when the function is destroyed, so the reference is taken back
    // exactly once.
    drop(unsafe { Arc::from_raw(hint as *const Hub) });
}

/// Environment cleanup hook (see `local`).
unsafe extern "C" fn cleanup(_arg: *mut c_void) {
    // The environment is going away: stop queueing into its thread-safe function.
    LOCAL.with(|l| {
        if let Some(local) = l.borrow_mut().take() {
            let mut st = local.hub.state.lock().unwrap_or_else(|e| e.into_inner());
            st.tsfn = None;
            st.jobs.clear();
        }
    });
}

/// This JS thread's completion state, created on first use. `env` is the calling thread's
/// live environment (every caller runs inside a napi call on the JS thread).
fn local(env: sys::napi_env) -> Result<Rc<Local>> {
    if let Some(l) = LOCAL.with(|l| l.borrow().clone()) {
        return Ok(l);
    }
    let hub = Arc::new(Hub { state: Mutex::new(HubState { tsfn: None, jobs: Vec::new(), scheduled: false }) });
    let ctx = Arc::into_raw(hub.clone()) as *mut c_void;
    let mut name = ptr::null_mut();
    let label = "memory-server completions";
    // SAFETY: `env` is live (see above); pointer and length describe `label`, valid UTF-8;
    // `name` is a valid out-pointer.
    check_status!(unsafe { sys::napi_create_string_utf8(env, label.as_ptr().cast(), label.len() as isize, &mut name) })?;
    let mut tsfn = ptr::null_mut();
    // SAFETY: `env` is live and `name` a string of it; `ctx` is an owned `Arc<Hub>` reference
    // handed to the function (taken back in `finalize`, or just below if creation fails);
    // `finalize` and `call_js` have the signatures Node expects; `tsfn` is a valid out-pointer.
    let status = unsafe { sys::napi_create_threadsafe_function(env, ptr::null_mut(), ptr::null_mut(), name, 0, 1, ctx, Some(finalize), ctx, Some(call_js), &mut tsfn) };
    if status != sys::Status::napi_ok {
        // SAFETY: creation failed, so Node kept no copy of `ctx`: the reference made by
        // `Arc::into_raw` above is taken back here, once.
        drop(unsafe { Arc::from_raw(ctx as *const Hub) });
        check_status!(status)?;
    }
    // SAFETY: on the JS thread of `env`, with the function just created in it.
    check_status!(unsafe { sys::napi_unref_threadsafe_function(env, tsfn) })?;
    // SAFETY: `env` is live; `cleanup` ignores its (null) argument.
    check_status!(unsafe { sys::napi_add_env_cleanup_hook(env, Some(cleanup), ptr::null_mut()) })?;
    hub.state.lock().unwrap_or_else(|e| e.into_inner()).tsfn = Some(Tsfn(tsfn));
    let l = Rc::new(Local { hub, tsfn, pending: Cell::new(0) });
    LOCAL.with(|cell| *cell.borrow_mut() = Some(l.clone()));
    Ok(l)
}

struct Deferred(sys::napi_deferred);
// SAFETY: only settled on the JS thread (inside a job), never touched elsewhere.
unsafe impl Send for Deferred {}

impl Deferred {
    /// (A method, so closures capture the whole `Send` wrapper, not its raw field.)
    fn raw(&self) -> sys::napi_deferred {
        self.0
    }
}

/// Turns a core result into the JS value of the promise, on the JS thread.
type Finish<U> = Box<dyn FnOnce(sys::napi_env, memory_core::Result<U>) -> Result<sys::napi_value> + Send>;

/// Settles one promise on the JS thread, exactly once; dropping it unsettled rejects.
struct Settle<U: Send + 'static> {
    hub: Arc<Hub>,
    deferred: Option<Deferred>,
    finish: Option<Finish<U>>,
}

impl<U: Send + 'static> Settle<U> {
    /// From any thread: queue the settlement for the JS thread (a job of [`Hub::push`], run
    /// by `call_js` with the live environment the promise was made in).
    fn settle(&mut self, r: memory_core::Result<U>) {
        let (Some(d), Some(finish)) = (self.deferred.take(), self.finish.take()) else { return };
        self.hub.push(Box::new(move |env| {
            match finish(env, r) {
                // SAFETY: on the JS thread of `env`, live; `d` was made by
                // `napi_create_promise` in `env` and is settled only here (taken out of the
                // `Settle` above, so once); `v` is a value of `env`.
                Ok(v) => unsafe {
                    sys::napi_resolve_deferred(env, d.raw(), v);
                },
                // SAFETY: as for resolving; the error value is created in `env` first.
                Err(e) => unsafe {
                    sys::napi_reject_deferred(env, d.raw(), JsError::from(e).into_value(env));
                },
            }
            settled(env);
        }));
    }
}

impl<U: Send + 'static> Drop for Settle<U> {
    fn drop(&mut self) {
        self.settle(Err(memory_core::Error::Unavailable("the store is closed".into())));
    }
}

/// One fewer pending promise; the last one lets the event loop exit again. On the JS thread
/// of `env`, live (called from a settlement job).
fn settled(env: sys::napi_env) {
    if let Some(l) = LOCAL.with(|l| l.borrow().clone()) {
        let n = l.pending.get().saturating_sub(1);
        l.pending.set(n);
        if n == 0 {
            // SAFETY: on the JS thread of `env`, whose thread-safe function `l.tsfn` is (this
            // thread's `LOCAL` is dropped by `cleanup` before the function is torn down).
            unsafe { sys::napi_unref_threadsafe_function(env, l.tsfn) };
        }
    }
}

/// Starts a store operation and returns its promise. `start` hands the completion callback to
/// the store (on this, the JS, thread); `map` turns the core result into the JS value on the
/// JS thread when it settles. Core errors become the binding's coded errors via `to_err`.
pub fn promise<'env, U, T, F, M>(env: &'env Env, to_err: fn(memory_core::Error) -> napi::Error, start: F, map: M) -> Result<PromiseRaw<'env, T>>
where
    U: Send + 'static,
    T: ToNapiValue,
    F: FnOnce(Done<U>),
    M: FnOnce(U) -> Result<T> + Send + 'static,
{
    let l = local(env.raw())?;
    let mut deferred = ptr::null_mut();
    let mut value = ptr::null_mut();
    // SAFETY: `env` is the live environment of this napi call; valid out-pointers.
    check_status!(unsafe { sys::napi_create_promise(env.raw(), &mut deferred, &mut value) })?;
    let n = l.pending.get();
    if n == 0 {
        // SAFETY: on the JS thread of `env`, whose thread-safe function `l.tsfn` is.
        check_status!(unsafe { sys::napi_ref_threadsafe_function(env.raw(), l.tsfn) })?;
    }
    l.pending.set(n + 1);
    let mut s = Settle::<U> {
        hub: l.hub.clone(),
        deferred: Some(Deferred(deferred)),
        finish: Some(Box::new(move |env, r| {
            let v = map(r.map_err(to_err)?)?;
            // SAFETY: `finish` runs in a settlement job, on the JS thread of `env`, live.
            unsafe { T::to_napi_value(env, v) }
        })),
    };
    start(Box::new(move |r| s.settle(r)));
    Ok(PromiseRaw::new(env.raw(), value))
}
