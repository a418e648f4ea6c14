//! Driving a run on the JavaScript thread.
//!
//! The core's `Orchestrator::run` future executes the whole pattern on the
//! task that polls it (concurrent patterns join their agent futures in that
//! task). Polling it here, on the JS thread, lets JS agents be called
//! directly from inside the poll ([`crate::callback`]), instead of two
//! thread hops per call (Tokio worker → JS thread → Tokio worker).
//!
//! One [`Task`] per run. Polls happen only on the thread that created the
//! task, inside napi's Tokio runtime context (timers, Redis I/O), in a
//! drain loop over a thread-local queue:
//! - the first poll happens inside the native `run` call itself;
//! - a wake on the JS thread during a drain queues the task; the loop polls
//!   it again after the current poll returns (no nested polls);
//! - a JS callback's Promise settling ([`settle_call`]) completes the call's
//!   oneshot and drains at once, in that same JS callback;
//! - any other wake on the JS thread (a JS call such as `cancel`, a
//!   finalizer) and every wake from another thread (a Tokio timer, a Redis
//!   reply) goes through one threadsafe function per thread, which drains
//!   on the JS thread's next event loop turn.
//!
//! While any run is pending, that threadsafe function is referenced, so the
//! process stays alive waiting for off-thread wake-ups; it is unreferenced
//! as soon as the last run ends.

use std::{
    cell::{Cell, RefCell},
    collections::{HashMap, VecDeque},
    future::Future,
    panic::{AssertUnwindSafe, catch_unwind},
    pin::Pin,
    ptr,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context, Poll, Wake, Waker},
    thread::{self, ThreadId},
};

use napi::{
    Env, JsError, Status,
    bindgen_prelude::{PromiseRaw, within_runtime_if_available},
    sys,
    threadsafe_function::{ThreadsafeCallContext, ThreadsafeFunction, ThreadsafeFunctionCallMode},
};
use napi_derive::napi;
use orchestra_core::Message;
use tokio::{runtime::Handle, sync::oneshot};

use crate::error::binding_error;

/// The future of one run, resolving to the JSON the JS Promise resolves with.
pub type RunFuture = Pin<Box<dyn Future<Output = napi::Result<String>> + Send>>;

/// Brings wake-ups onto the JS thread: `Some(task)` polls that task,
/// `None` only drains the queue. Weak at creation; referenced while runs
/// are pending (see [`keep_alive`]).
type Wakeup = ThreadsafeFunction<Option<Arc<Task>>, (), (), Status, false, true>;

/// A `napi_deferred`, only ever used on the JS thread that created it.
struct Deferred(sys::napi_deferred);

// SAFETY: the pointer is only dereferenced (resolved or rejected) on the JS
// thread that created it (`Task::thread`, checked before every poll); other
// threads at most drop it, which does nothing.
unsafe impl Send for Deferred {}

struct Running {
    future: RunFuture,
    deferred: Deferred,
    /// The run's conversation JSON as last handed to JS (see [`with_conversation`]).
    conversation: ConversationJson,
}

/// The conversation of one run as JSON, kept between its agent calls:
/// successive calls (and the agents of one concurrent step) get the same
/// messages plus a few new ones, so only the new ones are serialized.
#[derive(Default)]
pub struct ConversationJson {
    messages: Vec<Message>,
    /// Where each message's JSON ends in `json`.
    ends: Vec<usize>,
    /// `[` and the messages' JSON, comma-separated, without the closing `]`.
    json: String,
}

impl ConversationJson {
    /// `messages` as a JSON array.
    pub fn encode(&mut self, messages: &[Message]) -> serde_json::Result<String> {
        let same = self
            .messages
            .iter()
            .zip(messages)
            .take_while(|(a, b)| a == b)
            .count();
        self.messages.truncate(same);
        self.ends.truncate(same);
        match self.ends.last() {
            Some(&end) => self.json.truncate(end),
            None => {
                self.json.clear();
                self.json.push('[');
            }
        }
        for m in &messages[same..] {
            if !self.ends.is_empty() {
                self.json.push(',');
            }
            self.json.push_str(&serde_json::to_string(m)?);
            self.ends.push(self.json.len());
            self.messages.push(m.clone());
        }
        let mut out = String::with_capacity(self.json.len() + 1);
        out.push_str(&self.json);
        out.push(']');
        Ok(out)
    }
}

/// One run driven on the JS thread.
pub struct Task {
    running: Mutex<Option<Running>>,
    /// In the queue or about to be: set by a wake, cleared just before a poll.
    queued: AtomicBool,
    thread: ThreadId,
    runtime: Handle,
    wakeup: Arc<Wakeup>,
}

impl Wake for Task {
    fn wake(self: Arc<Self>) {
        schedule(self);
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if !self.queued.load(Ordering::Acquire) {
            schedule(self.clone());
        }
    }
}

/// The per-thread state of the driver.
struct Local {
    /// The env of the poll in progress on this thread (null outside polls).
    polling: Cell<sys::napi_env>,
    queue: RefCell<VecDeque<Arc<Task>>>,
    draining: Cell<bool>,
    /// Inside a Promise callback that drains right after its wake.
    settling: Cell<u32>,
    /// A drain was asked of the threadsafe function and has not run yet.
    drain_requested: Cell<bool>,
    /// Runs started on this thread and not finished.
    pending: Cell<usize>,
    /// The threadsafe function of this thread's env, created with the first run.
    wakeup: RefCell<Option<(sys::napi_env, Arc<Wakeup>)>>,
    /// The conversation cache of the run being polled.
    conversation: RefCell<Option<ConversationJson>>,
    /// Direct calls whose JS answer is a pending Promise, by slot number.
    slots: RefCell<Option<HashMap<i64, oneshot::Sender<String>>>>,
    next_slot: Cell<i64>,
}

thread_local! {
    static LOCAL: Local = const {
        Local {
            polling: Cell::new(ptr::null_mut()),
            queue: RefCell::new(VecDeque::new()),
            draining: Cell::new(false),
            settling: Cell::new(0),
            drain_requested: Cell::new(false),
            pending: Cell::new(0),
            wakeup: RefCell::new(None),
            conversation: RefCell::new(None),
            slots: RefCell::new(None),
            next_slot: Cell::new(0),
        }
    };
}

/// A direct call's answer that comes later: JS hands it to [`settle_call`]
/// with the call's slot number. Dropping it (the call was abandoned: time
/// limit, cancellation) frees the slot.
pub struct Pending {
    slot: i64,
    rx: oneshot::Receiver<String>,
}

/// `messages` as JSON, through the cache of the run being polled (plain
/// serialization outside a poll).
pub fn with_conversation(messages: &[Message]) -> serde_json::Result<String> {
    let cached = LOCAL.with(|l| {
        l.conversation
            .borrow_mut()
            .as_mut()
            .map(|c| c.encode(messages))
    });
    cached.unwrap_or_else(|| serde_json::to_string(messages))
}

/// The slot number for the next direct call on this thread.
pub fn next_slot() -> i64 {
    LOCAL.with(|l| {
        let slot = l.next_slot.get().wrapping_add(1);
        l.next_slot.set(slot);
        slot
    })
}

impl Pending {
    /// Waits for `slot`'s answer. Registered after the call returned: the
    /// facade settles from a Promise callback, never during the call.
    pub fn register(slot: i64) -> Self {
        let (tx, rx) = oneshot::channel();
        LOCAL.with(|l| {
            l.slots
                .borrow_mut()
                .get_or_insert_with(HashMap::new)
                .insert(slot, tx);
        });
        Self { slot, rx }
    }

    /// The answer, once JS settles it; `None` if the slot was dropped unsettled.
    pub async fn answer(mut self) -> Option<String> {
        (&mut self.rx).await.ok()
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        let _ = LOCAL.try_with(|l| {
            if let Some(slots) = l.slots.borrow_mut().as_mut() {
                slots.remove(&self.slot);
            }
        });
    }
}

/// Called by the facade when the Promise of a direct call settles (its
/// wrapper never rejects): completes the call, then polls the run it woke,
/// right here.
// The test build does not register exported functions with Node.
#[cfg_attr(test, allow(dead_code))]
#[napi]
pub fn settle_call(env: Env, slot: i64, reply: String) {
    let sender = LOCAL.with(|l| l.slots.borrow_mut().as_mut().and_then(|s| s.remove(&slot)));
    let Some(sender) = sender else {
        // The call was abandoned (time limit, cancellation) before its answer.
        return;
    };
    settle_then_drain(env.raw(), || {
        let _ = sender.send(reply);
    });
}

/// The env of the poll in progress on this thread, if any: JS functions of
/// that env can be called directly.
pub fn polling_env() -> Option<sys::napi_env> {
    LOCAL
        .try_with(|l| l.polling.get())
        .ok()
        .filter(|env| !env.is_null())
}

/// Starts driving `future` on the JS thread; the returned Promise settles
/// with its output. The first poll happens before this returns.
pub fn spawn<'env>(env: &'env Env, future: RunFuture) -> napi::Result<PromiseRaw<'env, String>> {
    let runtime = within_runtime_if_available(Handle::try_current)
        .map_err(|e| binding_error("internal_error", format!("no async runtime: {e}")))?;
    let wakeup = wakeup_for(env)?;
    let mut deferred = ptr::null_mut();
    let mut promise = ptr::null_mut();
    // SAFETY: called on the JS thread with its live env; both out pointers are valid.
    let status = unsafe { sys::napi_create_promise(env.raw(), &mut deferred, &mut promise) };
    if status != sys::Status::napi_ok {
        return Err(napi::Error::new(
            Status::from(status),
            "could not create a promise",
        ));
    }
    let task = Arc::new(Task {
        running: Mutex::new(Some(Running {
            future,
            deferred: Deferred(deferred),
            conversation: ConversationJson::default(),
        })),
        queued: AtomicBool::new(true),
        thread: thread::current().id(),
        runtime,
        wakeup: wakeup.clone(),
    });
    let first = LOCAL.with(|l| {
        let pending = l.pending.get();
        l.pending.set(pending + 1);
        if pending == 0 {
            keep_alive(env.raw(), &wakeup, true);
        }
        l.queue.borrow_mut().push_back(task);
        !l.draining.get()
    });
    if first {
        drain(env.raw());
    }
    Ok(PromiseRaw::new(env.raw(), promise))
}

/// Runs `wake` (which completes a oneshot a run waits on) and then polls
/// whatever it woke, right here on the JS thread: for Promise callbacks.
#[cfg_attr(test, allow(dead_code))]
fn settle_then_drain(env: sys::napi_env, wake: impl FnOnce()) {
    let inside = LOCAL.try_with(|l| l.settling.set(l.settling.get() + 1));
    wake();
    if inside.is_ok() {
        let _ = LOCAL.try_with(|l| l.settling.set(l.settling.get().saturating_sub(1)));
        drain(env);
    }
}

/// The threadsafe function of this env, created on first use.
fn wakeup_for(env: &Env) -> napi::Result<Arc<Wakeup>> {
    let existing = LOCAL.with(|l| {
        l.wakeup
            .borrow()
            .as_ref()
            .filter(|(e, w)| *e == env.raw() && !w.aborted())
            .map(|(_, w)| w.clone())
    });
    if let Some(w) = existing {
        return Ok(w);
    }
    let noop = env.create_function_from_closure::<(), (), _>("orchestraWakeup", |_| Ok(()))?;
    let wakeup: Wakeup = noop
        .build_threadsafe_function::<Option<Arc<Task>>>()
        .callee_handled::<false>()
        .weak::<true>()
        .build_callback(|ctx: ThreadsafeCallContext<Option<Arc<Task>>>| {
            on_wakeup(ctx.env.raw(), ctx.value);
            Ok(())
        })?;
    let wakeup = Arc::new(wakeup);
    LOCAL.with(|l| {
        *l.wakeup.borrow_mut() = Some((env.raw(), wakeup.clone()));
    });
    Ok(wakeup)
}

/// References (or unreferences) the threadsafe function, so a pending run
/// keeps the event loop alive and a finished one lets the process exit.
fn keep_alive(env: sys::napi_env, wakeup: &Wakeup, alive: bool) {
    wakeup.handle.with_read_aborted(|aborted| {
        if aborted {
            return;
        }
        // SAFETY: on the env's JS thread; the threadsafe function is not
        // finalized (checked under the handle's lock).
        let status = unsafe {
            if alive {
                sys::napi_ref_threadsafe_function(env, wakeup.raw())
            } else {
                sys::napi_unref_threadsafe_function(env, wakeup.raw())
            }
        };
        if status != sys::Status::napi_ok {
            tracing::debug!(
                status,
                alive,
                "could not change the run driver's event loop reference"
            );
        }
    });
}

fn on_wakeup(env: sys::napi_env, task: Option<Arc<Task>>) {
    let _ = LOCAL.try_with(|l| {
        l.drain_requested.set(false);
        if let Some(task) = task {
            l.queue.borrow_mut().push_back(task);
        }
    });
    drain(env);
}

/// Queues a woken task for a poll on its JS thread.
fn schedule(task: Arc<Task>) {
    if task.queued.swap(true, Ordering::AcqRel) {
        return;
    }
    if thread::current().id() != task.thread {
        let wakeup = task.wakeup.clone();
        if wakeup.call(Some(task), ThreadsafeFunctionCallMode::NonBlocking) != Status::Ok {
            tracing::debug!("run woken while its JS environment is closing");
        }
        return;
    }
    let ask = LOCAL.try_with(|l| {
        let wakeup = task.wakeup.clone();
        l.queue.borrow_mut().push_back(task);
        let ask = !l.draining.get() && l.settling.get() == 0 && !l.drain_requested.get();
        if ask {
            l.drain_requested.set(true);
        }
        ask.then_some(wakeup)
    });
    if let Ok(Some(wakeup)) = ask {
        // Not inside a poll or a Promise callback (e.g. `cancel()` or a
        // finalizer, where calling JS is not allowed): poll on the next turn.
        if wakeup.call(None, ThreadsafeFunctionCallMode::NonBlocking) != Status::Ok {
            let _ = LOCAL.try_with(|l| l.drain_requested.set(false));
            tracing::debug!("run woken while its JS environment is closing");
        }
    }
}

/// Polls queued tasks until the queue is empty; a no-op when a drain is
/// already running further up the stack.
fn drain(env: sys::napi_env) {
    let Ok(started) = LOCAL.try_with(|l| !l.draining.replace(true)) else {
        return;
    };
    if !started {
        return;
    }
    struct Done;
    impl Drop for Done {
        fn drop(&mut self) {
            let _ = LOCAL.try_with(|l| l.draining.set(false));
        }
    }
    let _done = Done;
    while let Some(task) = LOCAL.with(|l| l.queue.borrow_mut().pop_front()) {
        poll_task(env, &task);
    }
}

fn poll_task(env: sys::napi_env, task: &Arc<Task>) {
    task.queued.store(false, Ordering::Release);
    let mut slot = task.running.lock().unwrap_or_else(PoisonError::into_inner);
    let Some(running) = slot.as_mut() else {
        return;
    };
    let mut scope = ptr::null_mut();
    // SAFETY: on the JS thread of `env` (tasks are only queued there).
    let opened = unsafe { sys::napi_open_handle_scope(env, &mut scope) } == sys::Status::napi_ok;
    let conversation = std::mem::take(&mut running.conversation);
    let outer = LOCAL.with(|l| {
        *l.conversation.borrow_mut() = Some(conversation);
        l.polling.replace(env)
    });
    let waker = Waker::from(task.clone());
    let mut cx = Context::from_waker(&waker);
    let polled = {
        let _runtime = task.runtime.enter();
        catch_unwind(AssertUnwindSafe(|| running.future.as_mut().poll(&mut cx)))
    };
    running.conversation = LOCAL.with(|l| {
        l.polling.set(outer);
        l.conversation.borrow_mut().take().unwrap_or_default()
    });
    let output = match polled {
        Ok(Poll::Pending) => None,
        Ok(Poll::Ready(output)) => Some(output),
        Err(_) => {
            tracing::error!("a run panicked while driven on the JS thread");
            Some(Err(binding_error("internal_error", "the run panicked")))
        }
    };
    if let Some(output) = output
        && let Some(running) = slot.take()
    {
        drop(slot);
        settle(env, running.deferred, output);
        finished(env, &task.wakeup);
    }
    if opened {
        // SAFETY: closes the scope opened above, on the same thread.
        unsafe { sys::napi_close_handle_scope(env, scope) };
    }
}

fn finished(env: sys::napi_env, wakeup: &Wakeup) {
    let last = LOCAL.with(|l| {
        let pending = l.pending.get().saturating_sub(1);
        l.pending.set(pending);
        pending == 0
    });
    if last {
        keep_alive(env, wakeup, false);
    }
}

/// A JS string from JSON text. Such text is mostly ASCII, and an ASCII
/// string is copied as Latin-1, which skips V8's UTF-8 decoding.
///
/// # Safety
///
/// On the JS thread of `env`, inside a handle scope.
pub unsafe fn js_string(env: sys::napi_env, s: &str) -> napi::Result<sys::napi_value> {
    let mut value = ptr::null_mut();
    let len = isize::try_from(s.len())
        .map_err(|_| napi::Error::new(Status::InvalidArg, "string too long"))?;
    // SAFETY: `s` is valid for `len` bytes; the caller guarantees the thread and scope.
    let status = unsafe {
        if s.is_ascii() {
            sys::napi_create_string_latin1(env, s.as_ptr().cast(), len, &mut value)
        } else {
            sys::napi_create_string_utf8(env, s.as_ptr().cast(), len, &mut value)
        }
    };
    if status != sys::Status::napi_ok {
        return Err(napi::Error::new(
            Status::from(status),
            "could not create a string",
        ));
    }
    Ok(value)
}

/// Resolves or rejects the run's Promise.
fn settle(env: sys::napi_env, deferred: Deferred, output: napi::Result<String>) {
    // SAFETY: on the JS thread that created `deferred`, inside a handle scope.
    let status = unsafe {
        match output {
            Ok(json) => match js_string(env, &json) {
                Ok(value) => sys::napi_resolve_deferred(env, deferred.0, value),
                Err(e) => {
                    sys::napi_reject_deferred(env, deferred.0, JsError::from(e).into_value(env))
                }
            },
            Err(e) => sys::napi_reject_deferred(env, deferred.0, JsError::from(e).into_value(env)),
        }
    };
    if status != sys::Status::napi_ok {
        tracing::warn!(status, "could not settle a run's promise");
    }
}
