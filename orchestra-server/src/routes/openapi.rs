//! `GET /openapi.json`: the OpenAPI 3.1 document, generated from the code.
//!
//! Paths and server-side bodies come from utoipa annotations on the handlers.
//! The core's types (request, result, session, events) derive `schemars`
//! schemas; they are generated here with `$ref`s pointing into
//! `#/components/schemas`, so the document describes exactly what the core
//! serializes. The placeholders below give those schemas names that the
//! utoipa annotations can refer to.

use std::{borrow::Cow, sync::OnceLock};

use axum::{Json, extract::State};
use schemars::{
    JsonSchema, SchemaGenerator,
    generate::{Contract, SchemaSettings},
};
use serde_json::{Map, Value};
use utoipa::{
    Modify, OpenApi, PartialSchema, ToSchema,
    openapi::{
        RefOr, Schema,
        schema::ObjectBuilder,
        security::{Http, HttpAuthScheme, SecurityScheme},
    },
};

use crate::{
    discovery::{AgentListing, AgentSource},
    error::{ErrorBody, ErrorDetail},
    routes::{
        self,
        agents::{AgentList, RegisterBody, Registered},
        health::{Health, StoreHealth},
        orchestrate::Accepted,
        patterns::{PatternList, PatternListing},
        sessions::SessionList,
    },
    state::AppState,
};

macro_rules! core_schema {
    ($placeholder:ident, $name:literal) => {
        #[doc = concat!("Names the core's `", $name, "` schema in the OpenAPI document.")]
        pub struct $placeholder;
        impl PartialSchema for $placeholder {
            fn schema() -> RefOr<Schema> {
                ObjectBuilder::new().into()
            }
        }
        impl ToSchema for $placeholder {
            fn name() -> Cow<'static, str> {
                Cow::Borrowed($name)
            }
        }
    };
}

core_schema!(RunRequestSchema, "RunRequest");
core_schema!(OrchestrateRequestSchema, "OrchestrateRequest");
core_schema!(RunResultSchema, "RunResult");
core_schema!(SessionSchema, "Session");
core_schema!(SessionSummarySchema, "SessionSummary");
core_schema!(OrchestrationEventSchema, "OrchestrationEvent");

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Orchestra",
        description = "Run multi-agent patterns (sequential, concurrent, handoff, group_chat, dynamic) over HTTP. \
            Errors are JSON `{\"error\":{\"code\",\"message\"}}` with stable codes. When API keys are configured, \
            send `Authorization: Bearer <key>`.",
    ),
    paths(
        routes::orchestrate::orchestrate,
        routes::orchestrate::orchestrate_stream,
        routes::sessions::list_sessions,
        routes::sessions::get_session,
        routes::sessions::delete_session,
        routes::patterns::list_patterns,
        routes::schemas::events_schema,
        routes::agents::list_agents,
        routes::agents::register_agent,
        routes::agents::deregister_agent,
        routes::runs::get_run,
        routes::runs::answer_run,
        routes::runs::cancel_run,
        routes::runs::stop_run,
        routes::runs::run_events,
        routes::health::health,
        routes::metrics::metrics,
        openapi_json,
    ),
    components(schemas(
        ErrorBody, ErrorDetail, SessionList, PatternList, PatternListing, AgentList, AgentListing,
        AgentSource, RegisterBody, Registered, Accepted, routes::runs::InputBody, routes::runs::Resumed, routes::runs::StopBody,
        Health, StoreHealth, RunRequestSchema, OrchestrateRequestSchema, RunResultSchema, SessionSchema,
        SessionSummarySchema, OrchestrationEventSchema,
    )),
    modifiers(&BearerAuth),
    security(("api_key" = [])),
)]
struct ApiDoc;

/// The complete document as JSON (built once).
pub fn document() -> &'static Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    DOC.get_or_init(|| {
        let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or_else(|e| {
            tracing::error!(error = %e, "could not serialize the OpenAPI document");
            Value::Object(Map::new())
        });
        let mut defs = core_definitions();
        if let Some(request) = orchestrate_request(&defs) {
            defs.insert("OrchestrateRequest".into(), request);
        }
        if let Some(schemas) = doc
            .pointer_mut("/components/schemas")
            .and_then(Value::as_object_mut)
        {
            for (name, schema) in defs {
                schemas.insert(name, schema);
            }
        }
        doc
    })
}

fn generator(contract: Contract) -> SchemaGenerator {
    let mut settings = SchemaSettings::draft2020_12();
    settings.definitions_path = "/components/schemas".into();
    settings.meta_schema = None;
    settings.contract = contract;
    settings.into_generator()
}

fn define<T: JsonSchema>(g: &mut SchemaGenerator) {
    let _ = g.subschema_for::<T>();
}

/// The body of `POST /orchestrate` and `/orchestrate/stream`: a
/// `RunRequest` plus `mode`, which the server takes off before the core
/// reads the rest (a `RunRequest` refuses unknown fields, so the mode
/// cannot be a separate `allOf` part).
fn orchestrate_request(defs: &Map<String, Value>) -> Option<Value> {
    let mut request = defs.get("RunRequest")?.clone();
    let properties = request.get_mut("properties")?.as_object_mut()?;
    properties.insert(
        "mode".into(),
        serde_json::json!({
            "type": "string",
            "enum": ["sync", "async"],
            "default": "sync",
            "description": "\"async\" queues the run and answers 202 (POST /orchestrate, Redis store only; \
                the same as `Prefer: respond-async`); \"sync\" runs it within the request.",
        }),
    );
    if let Some(description) = request.get_mut("description") {
        *description =
            Value::String("A run request (RunRequest) and how to run it (`mode`).".into());
    }
    Some(request)
}

/// Schemas of the core types: the request as it is read, the rest as written.
fn core_definitions() -> Map<String, Value> {
    let mut read = generator(Contract::Deserialize);
    define::<orchestra_core::RunRequest>(&mut read);
    let mut defs = read.take_definitions(true);
    let mut written = generator(Contract::Serialize);
    define::<orchestra_core::RunResult>(&mut written);
    define::<orchestra_core::Session>(&mut written);
    define::<orchestra_core::session::SessionSummary>(&mut written);
    define::<orchestra_core::OrchestrationEvent>(&mut written);
    defs.extend(written.take_definitions(true));
    defs
}

/// This document.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "operations",
    responses((status = 200, description = "The OpenAPI 3.1 document", body = Object))
)]
pub async fn openapi_json(State(_state): State<AppState>) -> Json<Value> {
    Json(document().clone())
}
