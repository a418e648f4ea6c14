//! Calling JavaScript from Rust: one JSON string in, one JSON envelope out.
//!
//! The facade wraps every user function (agent, manager, planner) so that it
//! takes a JSON string and answers `{"ok": value}`,
//! `{"error": {"message", "retryable"?}}` or, for an agent that asks a person
//! (`InputRequired`), `{"input": {"prompt", "schema"?, "context"?}}`
//! (directly for a sync function, as a
//! Promise for an async one), whether the user function returned or threw. Rust therefore never sees a JS exception; the
//! call is a [`ThreadsafeFunction`] awaited with `call_async_catch`, so the
//! JS thread is never blocked.

use std::sync::Arc;

use napi::{Either, Status, bindgen_prelude::Promise, threadsafe_function::ThreadsafeFunction};
use orchestra_core::InputRequest;
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use serde_json::Value;

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

/// A shared handle on a JS callback.
#[derive(Clone)]
pub struct JsCallback {
    f: Arc<JsCallbackFn>,
}

impl JsCallback {
    pub fn new(f: JsCallbackFn) -> Self {
        Self { f: Arc::new(f) }
    }

    /// Calls the function with `payload` serialized, and decodes its answer.
    pub async fn call<P, R>(&self, payload: &P) -> Result<R, CallbackError>
    where
        P: Serialize + ?Sized,
        R: DeserializeOwned,
    {
        let json = serde_json::to_string(payload)
            .map_err(|e| CallbackError::Protocol(format!("could not encode the call: {e}")))?;
        let answer = self
            .f
            .call_async_catch(json)
            .await
            .map_err(|e| CallbackError::Protocol(format!("JavaScript call failed: {e}")))?;
        let reply = match answer {
            Either::A(reply) => reply,
            Either::B(promise) => promise
                .await
                .map_err(|e| CallbackError::Protocol(format!("JavaScript call failed: {e}")))?,
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
