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
//!   is called directly through a reference to it, with a slot number; a
//!   sync answer comes back at once, an async one through
//!   `settleCall(slot, answer)` into a oneshot, so no JS handle is held
//!   across an await;
//! - anywhere else (streams, resumes, queue workers, Tokio threads), through
//!   a [`ThreadsafeFunction`] awaited with `call_async_catch`, so the JS
//!   thread is never blocked.

use std::sync::Arc;

use napi::{
    Either, Env, JsValue, Status,
    bindgen_prelude::{FromNapiValue, Function, FunctionRef, Promise, ToNapiValue},
    sys,
    threadsafe_function::ThreadsafeFunction,
};
use orchestra_core::{AgentOutput, InputRequest, Message};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use serde_json::Value;

use crate::local::{Pending, js_string};

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

/// Marks an agent's plain text answer on the direct path (an envelope is
/// JSON, so it never starts with it).
const TEXT: char = '\u{0}';

/// The common answer, decoded straight into its type; anything else (or a
/// value of the wrong shape) goes through [`Reply`], which words the errors.
#[derive(Deserialize)]
#[serde(rename_all = "snake_case", bound = "R: DeserializeOwned")]
enum OkReply<R> {
    Ok(R),
}

/// What registration functions receive: the facade's wrapper itself,
/// `(json, slot?, messages?) => string | Promise<string> | undefined` (see
/// `wrapCallback` in `lib/orchestrator.js`).
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

    /// A callback that runs driven on the JS thread call directly (and
    /// everything else through its threadsafe function). Made on the JS
    /// thread, at registration.
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
        let reply = self.call_encoded(|_| Ok((encode(payload)?, None))).await?;
        decode(&reply)
    }

    /// Calls an agent function. On the direct path the conversation crosses
    /// as its own JSON string, which the facade parses only if the agent
    /// reads `input.messages`, and a plain text answer comes back as
    /// [`TEXT`] and the text, without JSON; elsewhere the whole input is one
    /// JSON string and every answer an envelope.
    pub async fn call_agent<W, H>(
        &self,
        whole: &W,
        head: &H,
        messages: &[Message],
    ) -> Result<AgentOutput, CallbackError>
    where
        W: Serialize + ?Sized,
        H: Serialize + ?Sized,
    {
        let mut reply = self
            .call_encoded(|direct| {
                if direct {
                    let messages =
                        crate::local::with_conversation(messages).map_err(encode_failed)?;
                    Ok((encode(head)?, Some(messages)))
                } else {
                    Ok((encode(whole)?, None))
                }
            })
            .await?;
        if reply.starts_with(TEXT) {
            reply.drain(..TEXT.len_utf8());
            return Ok(AgentOutput::text(reply));
        }
        decode(&reply)
    }

    /// `encode(direct)` gives the JSON argument and, on the direct path
    /// only, the conversation's JSON.
    async fn call_encoded(
        &self,
        encode: impl FnOnce(bool) -> Result<(String, Option<String>), CallbackError>,
    ) -> Result<String, CallbackError> {
        let failed =
            |e: napi::Error| CallbackError::Protocol(format!("JavaScript call failed: {e}"));
        let local = self.local.as_deref();
        let reply = if let Some((local, env)) = local.and_then(|l| Some((l, l.here()?))) {
            let (json, messages) = encode(true)?;
            match local.call(env, json, messages).map_err(failed)? {
                LocalAnswer::Now(reply) => reply,
                LocalAnswer::Later(pending) => pending.answer().await.ok_or_else(|| {
                    CallbackError::Protocol("JavaScript promise was dropped unsettled".into())
                })?,
            }
        } else {
            let (json, _) = encode(false)?;
            let answer = self.f.call_async_catch(json).await.map_err(failed)?;
            match answer {
                Either::A(reply) => reply,
                Either::B(promise) => promise.await.map_err(failed)?,
            }
        };
        Ok(reply)
    }
}

/// Decodes an answer envelope.
fn decode<R: DeserializeOwned>(reply: &str) -> Result<R, CallbackError> {
    if reply.starts_with(r#"{"ok":"#)
        && let Ok(OkReply::Ok(value)) = serde_json::from_str::<OkReply<R>>(reply)
    {
        return Ok(value);
    }
    match serde_json::from_str::<Reply>(reply) {
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

/// A reference to the JS function, for direct calls on its JS thread.
struct LocalFn {
    func: FunctionRef<String, Either<String, Promise<String>>>,
    /// The env the function belongs to (a `napi_env`, compared only).
    env: usize,
}

/// A direct call's answer: at once, or when its Promise settles.
enum LocalAnswer {
    Now(String),
    Later(Pending),
}

fn encode<P: Serialize + ?Sized>(payload: &P) -> Result<String, CallbackError> {
    serde_json::to_string(payload).map_err(encode_failed)
}

fn encode_failed(e: serde_json::Error) -> CallbackError {
    CallbackError::Protocol(format!("could not encode the call: {e}"))
}

impl LocalFn {
    /// Its env, when a run is being driven on its JS thread.
    fn here(&self) -> Option<sys::napi_env> {
        crate::local::polling_env().filter(|env| *env as usize == self.env)
    }

    /// Calls the function synchronously, as `(json, slot, messages?)`; only
    /// on its JS thread, inside a poll. The facade's wrapper answers a
    /// string at once, or `undefined` and later hands the answer to
    /// `settleCall(slot, answer)`.
    fn call(
        &self,
        raw_env: sys::napi_env,
        json: String,
        messages: Option<String>,
    ) -> napi::Result<LocalAnswer> {
        let env = Env::from_raw(raw_env);
        let func = self.func.borrow_back(&env)?;
        let slot = crate::local::next_slot();
        let mut undefined = std::ptr::null_mut();
        let mut result = std::ptr::null_mut();
        // SAFETY: on the JS thread of `raw_env` (checked by `here`), inside
        // the driver's handle scope; every pointer passed is valid.
        let status = unsafe {
            sys::napi_get_undefined(raw_env, &mut undefined);
            let messages = match messages {
                Some(m) => js_string(raw_env, &m)?,
                None => undefined,
            };
            let args = [
                js_string(raw_env, &json)?,
                i64::to_napi_value(raw_env, slot)?,
                messages,
            ];
            sys::napi_call_function(
                raw_env,
                undefined,
                func.raw(),
                args.len(),
                args.as_ptr(),
                &mut result,
            )
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
        match kind {
            // SAFETY: checked to be a string.
            sys::ValueType::napi_string => {
                unsafe { String::from_napi_value(raw_env, result) }.map(LocalAnswer::Now)
            }
            sys::ValueType::napi_undefined => Ok(LocalAnswer::Later(Pending::register(slot))),
            _ => Err(napi::Error::new(
                Status::InvalidArg,
                "callback answered neither a string nor undefined",
            )),
        }
    }
}
