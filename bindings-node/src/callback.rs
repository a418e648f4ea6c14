//! Calling JavaScript from Rust: one JSON string in, one JSON envelope out.
//!
//! The facade wraps every user function (agent, manager, planner) so that it
//! takes a JSON string and answers `{"ok": value}`,
//! `{"error": {"message", "retryable"?}}` or, for an agent that asks a person
//! (`InputRequired`), `{"input": {"prompt", "schema"?, "context"?}}`
//! (directly for a sync function, as a
//! Promise for an async one), whether the user function returned or threw. Rust therefore never sees a JS exception.
//!
//! Two ways to make the call, chosen per call:
//! - inside a run driven on the JS thread ([`crate::local`]), the function
//!   is called directly through a reference to it; a Promise answer is
//!   awaited through a oneshot completed by its `then`/`catch` callbacks, so
//!   no JS handle is held across an await;
//! - anywhere else (streams, resumes, queue workers, Tokio threads), through
//!   a [`ThreadsafeFunction`] awaited with `call_async_catch`, so the JS
//!   thread is never blocked.

use std::{cell::Cell, rc::Rc, sync::Arc};

use napi::{
    Either, Env, JsValue, Status,
    bindgen_prelude::{
        CallbackContext, FromNapiValue, Function, FunctionRef, Promise, PromiseRaw, ToNapiValue,
        Unknown,
    },
    sys,
    threadsafe_function::ThreadsafeFunction,
};
use orchestra_core::InputRequest;
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use serde_json::Value;
use tokio::sync::oneshot;

/// A JS function `(json: string) => string | Promise<string>`: a sync user
/// function answers in the same JS turn, without a Promise. Weak: a
/// registered callback does not keep the Node process alive on its own.
pub type JsCallbackFn =
    ThreadsafeFunction<String, Either<String, Promise<String>>, String, Status, false, true>;

/// Why a JS call did not produce a value.
#[derive(Debug)]
pub enum CallbackError {
    /// The user function threw or rejected.
    Thrown { message: String, retryable: bool },
    /// The call could not be made, or its answer was not the expected shape.
    Protocol(String),
    /// The user function asked a person a question (`InputRequired`).
    InputRequired(Box<InputRequest>),
}

impl CallbackError {
    pub fn message(&self) -> String {
        match self {
            Self::Thrown { message, .. } => message.clone(),
            Self::Protocol(m) => m.clone(),
            Self::InputRequired(r) => format!("input requested: {}", r.prompt),
        }
    }
}

#[derive(Deserialize)]
struct Question {
    prompt: String,
    #[serde(default)]
    schema: Option<Value>,
    #[serde(default)]
    context: Option<Value>,
}

#[derive(Deserialize)]
struct Thrown {
    #[serde(default)]
    message: String,
    #[serde(default)]
    retryable: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum Reply {
    Ok(Value),
    Error(Thrown),
    Input(Question),
}

/// What registration functions receive: the wrapped JS function itself.
pub type JsFunction<'env> = Function<'env, String, Either<String, Promise<String>>>;

/// A shared handle on a JS callback.
#[derive(Clone)]
pub struct JsCallback {
    f: Arc<JsCallbackFn>,
    local: Option<Arc<LocalFn>>,
}

impl JsCallback {
    /// A callback only ever called through its threadsafe function.
    pub fn new(f: JsCallbackFn) -> Self {
        Self {
            f: Arc::new(f),
            local: None,
        }
    }

    /// A callback that runs driven on the JS thread call directly; called on
    /// the JS thread at registration.
    pub fn with_local(env: &Env, f: &JsFunction<'_>) -> napi::Result<Self> {
        let tsfn: JsCallbackFn = f
            .build_threadsafe_function::<String>()
            .callee_handled::<false>()
            .weak::<true>()
            .build()?;
        let func = f.create_ref()?;
        Ok(Self {
            f: Arc::new(tsfn),
            local: Some(Arc::new(LocalFn {
                func,
                env: env.raw() as usize,
            })),
        })
    }

    /// Calls the function with `payload` serialized, and decodes its answer.
    pub async fn call<P, R>(&self, payload: &P) -> Result<R, CallbackError>
    where
        P: Serialize + ?Sized,
        R: DeserializeOwned,
    {
        let json = serde_json::to_string(payload)
            .map_err(|e| CallbackError::Protocol(format!("could not encode the call: {e}")))?;
        let failed =
            |e: napi::Error| CallbackError::Protocol(format!("JavaScript call failed: {e}"));
        let local = self.local.as_deref().and_then(LocalFn::here);
        let reply = if let Some((local, env)) = local {
            match local.call(env, json).map_err(failed)? {
                LocalAnswer::Now(reply) => reply,
                LocalAnswer::Later(rx) => rx
                    .await
                    .map_err(|_| {
                        CallbackError::Protocol("JavaScript promise was dropped unsettled".into())
                    })?
                    .map_err(CallbackError::Protocol)?,
            }
        } else {
            let answer = self.f.call_async_catch(json).await.map_err(failed)?;
            match answer {
                Either::A(reply) => reply,
                Either::B(promise) => promise.await.map_err(failed)?,
            }
        };
        match serde_json::from_str::<Reply>(&reply) {
            Ok(Reply::Ok(v)) => serde_json::from_value(v)
                .map_err(|e| CallbackError::Protocol(format!("unexpected answer: {e}"))),
            Ok(Reply::Error(t)) => Err(CallbackError::Thrown {
                message: t.message,
                retryable: t.retryable,
            }),
            Ok(Reply::Input(q)) => {
                let mut request = InputRequest::new(q.prompt);
                request.schema = q.schema;
                request.context = q.context;
                Err(CallbackError::InputRequired(Box::new(request)))
            }
            Err(e) => Err(CallbackError::Protocol(format!("unreadable answer: {e}"))),
        }
    }
}

/// A reference to the JS function, for direct calls on its JS thread.
struct LocalFn {
    func: FunctionRef<String, Either<String, Promise<String>>>,
    /// The env the function belongs to (a `napi_env`, compared only).
    env: usize,
}

/// A direct call's answer: at once, or when its Promise settles.
enum LocalAnswer {
    Now(String),
    Later(oneshot::Receiver<Result<String, String>>),
}

impl LocalFn {
    /// This function and its env, when a run is being driven on its JS thread.
    fn here(&self) -> Option<(&Self, sys::napi_env)> {
        crate::local::polling_env()
            .filter(|env| *env as usize == self.env)
            .map(|env| (self, env))
    }

    /// Calls the function synchronously; only on its JS thread, inside a poll.
    fn call(&self, raw_env: sys::napi_env, json: String) -> napi::Result<LocalAnswer> {
        let env = Env::from_raw(raw_env);
        let func = self.func.borrow_back(&env)?;
        let mut undefined = std::ptr::null_mut();
        let mut result = std::ptr::null_mut();
        // SAFETY: on the JS thread of `raw_env` (checked by `here`), inside
        // the driver's handle scope; every pointer passed is valid.
        let status = unsafe {
            let arg = String::to_napi_value(raw_env, json)?;
            sys::napi_get_undefined(raw_env, &mut undefined);
            sys::napi_call_function(raw_env, undefined, func.raw(), 1, &arg, &mut result)
        };
        if status == sys::Status::napi_pending_exception {
            // The facade's wrapper never throws; should anything else, the
            // exception must not stay pending in the env during the poll.
            let mut exception = std::ptr::null_mut();
            // SAFETY: as above; clears the pending exception.
            unsafe { sys::napi_get_and_clear_last_exception(raw_env, &mut exception) };
            return Err(napi::Error::new(Status::PendingException, "callback threw"));
        }
        if status != sys::Status::napi_ok {
            return Err(napi::Error::new(
                Status::from(status),
                "callback call failed",
            ));
        }
        let mut kind = sys::ValueType::napi_undefined;
        // SAFETY: `result` is the value just returned, in the current scope.
        unsafe { sys::napi_typeof(raw_env, result, &mut kind) };
        if kind == sys::ValueType::napi_string {
            // SAFETY: checked to be a string.
            return unsafe { String::from_napi_value(raw_env, result) }.map(LocalAnswer::Now);
        }
        let mut is_promise = false;
        // SAFETY: as above.
        unsafe { sys::napi_is_promise(raw_env, result, &mut is_promise) };
        if !is_promise {
            return Err(napi::Error::new(
                Status::InvalidArg,
                "callback answered neither a string nor a Promise",
            ));
        }
        let (tx, rx) = oneshot::channel();
        let tx = Rc::new(Cell::new(Some(tx)));
        let tx_catch = tx.clone();
        let promise = PromiseRaw::<String>::new(raw_env, result);
        promise
            .then(move |ctx: CallbackContext<String>| {
                let env = ctx.env.raw();
                let value = ctx.value;
                crate::local::settle_then_drain(env, || {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(Ok(value));
                    }
                });
                Ok(())
            })?
            .catch(move |ctx: CallbackContext<Unknown<'_>>| {
                let env = ctx.env.raw();
                let message = napi::Error::from_unknown_without_coercion(ctx.value).reason;
                crate::local::settle_then_drain(env, || {
                    if let Some(tx) = tx_catch.take() {
                        let _ = tx.send(Err(format!("JavaScript promise rejected: {message}")));
                    }
                });
                Ok(())
            })?;
        Ok(LocalAnswer::Later(rx))
    }
}
