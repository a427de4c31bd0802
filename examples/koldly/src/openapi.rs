//! The OpenAPI 3.1 document of koldly's API, generated from the handlers, served
//! at `GET /api/openapi.json`, and its reference page at `/docs` (Swagger UI,
//! its assets compiled into the binary: the page works offline).
//!
//! Routing and documenting are one act: each domain's `routes()` returns a
//! `utoipa_axum` [`OpenApiRouter`] and registers its handlers with
//! `.routes(routes!(handler, ...))`, which routes each handler at the method
//! and path of its `#[utoipa::path]` attribute and adds that operation to the
//! document. The recipe for a new route is in the README ("API reference").
//!
//! What every operation may answer because of the middleware stack (400 for
//! hostile text, 500, 503, 504; 413 where a body is read) is added here by [`StackProblems`], not
//! repeated on each route; what a route's own code may answer is declared on
//! it with [`Problems`] of the sets below.

use axum::Router;
use steadfast::{
    Problem,
    openapi::{ProblemResponses, ProblemSet},
    problem_responses,
};
use utoipa::{
    Modify, OpenApi,
    openapi::{
        self, HttpMethod,
        path::Operation,
        security::{HttpAuthScheme, HttpBuilder, SecurityScheme},
    },
};
use utoipa_axum::router::OpenApiRouter;
use utoipa_swagger_ui::SwaggerUi;

pub use steadfast::openapi::Problems;

use crate::{error::types, plans::PLAN_LIMIT_TYPE, validation::FieldError};

/// Where the document is served.
pub const OPENAPI_PATH: &str = "/api/openapi.json";
/// Where the API reference page is served.
pub const DOCS_PATH: &str = "/docs";
/// The name of the bearer security scheme: `security(("bearer" = []))`.
pub const BEARER: &str = "bearer";

/// The base of the document: its info, the bearer scheme and the shared schemas.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Koldly API",
        description = "Cold outreach: accounts, campaigns, prospects, ICP templates, onboarding, \
                       AI-drafted emails and their approval. Every error is an RFC 9457 problem \
                       (application/problem+json). Lists are keyset-paginated: `limit` (1-100, \
                       default 20) and the previous page's `next_cursor` as `cursor`. Creating \
                       POSTs accept an `Idempotency-Key` header."
    ),
    modifiers(&BearerScheme),
    components(schemas(Problem, FieldError)),
    tags(
        (name = "accounts", description = "Signup, login, sessions, password reset, email verification, Sign in with Google"),
        (name = "health", description = "Liveness and the database check"),
        (name = "jobs", description = "Background jobs"),
        (name = "campaigns", description = "Campaigns"),
        (name = "prospects", description = "Prospects of a campaign"),
        (name = "icp-templates", description = "Ideal customer profile templates"),
        (name = "onboarding", description = "The first-run questionnaire"),
        (name = "emails", description = "AI-drafted emails and their approval"),
        (name = "inbox", description = "Replies to campaigns, their categories and answers"),
        (name = "webhooks", description = "The mail provider's signed webhooks (Mailgun's scheme): delivery events and inbound replies"),
        (name = "sending", description = "Verified senders, sending a campaign, follow-up sequences, sent mail, one-click unsubscribe"),
        (name = "billing", description = "Plans, usage, Stripe checkout, portal, invoices and webhook"),
        (name = "dashboard", description = "Dashboards, the activity feed and the user's time zone"),
        (name = "admin", description = "Platform metrics for admins"),
    )
)]
pub struct ApiDoc;

/// Adds the bearer scheme (`Authorization: Bearer <JWT>` from signup or login).
struct BearerScheme;

impl Modify for BearerScheme {
    fn modify(&self, doc: &mut openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            BEARER,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "The `token` of a session from signup, login or Sign in with Google.",
                    ))
                    .build(),
            ),
        );
    }
}

problem_responses! {
    /// Routes behind a bearer token.
    pub struct Unauthorized {
        401 => "No valid bearer token (missing, malformed, expired, or its sessions were ended).",
            types = [types::UNAUTHORIZED];
    }
}

problem_responses! {
    /// Routes naming a resource by id: another account's is answered alike.
    pub struct NotFound {
        404 => "No such resource, or it belongs to another account.", types = [types::NOT_FOUND];
    }
}

problem_responses! {
    /// Routes reading a JSON body with koldly's validation.
    pub struct InvalidBody {
        400 => "The body is not JSON, or a text holds control characters; `errors` names the field.",
            types = [types::VALIDATION];
        415 => "The body is not `application/json`.";
        422 => "The JSON has the wrong shape or breaks a rule; `errors` names each field.",
            types = [types::VALIDATION];
    }
}

problem_responses! {
    /// Lists: `limit`, `cursor` and filters are checked.
    pub struct InvalidQuery {
        400 => "`limit`, `cursor` or a filter is malformed, or the query holds control characters; `errors` names it.",
            types = [types::VALIDATION];
    }
}

problem_responses! {
    /// Routes that add what a plan limits.
    pub struct PlanLimit {
        403 => "The plan's limit is reached; the problem names the limit.", types = [PLAN_LIMIT_TYPE];
    }
}

problem_responses! {
    /// Routes behind the idempotency layer.
    pub struct Idempotent {
        400 => "The `Idempotency-Key` is malformed.";
        409 => "A request with this `Idempotency-Key` is still being processed; retry after `Retry-After`.";
        422 => "This `Idempotency-Key` was used for a different request.";
    }
}

/// The `Idempotency-Key` header of the routes behind the idempotency layer:
/// `params(IdempotencyKey, ...)` on each (with the [`Idempotent`] problems).
#[derive(Debug, utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)]
pub struct IdempotencyKey {
    /// A unique key per request (a UUID, for instance), the same when retrying
    /// it: a retry gets the first answer replayed (`Idempotent-Replayed: true`)
    /// instead of doing the work twice. 1 to 255 printable ASCII characters
    /// (an empty key is refused: schemathesis found the document allowing it);
    /// keys are scoped by the signed-in user, or by the client address.
    /// The layer refuses `"` and `,` in a key sent unquoted, hence the pattern.
    #[param(
        rename = "Idempotency-Key",
        min_length = 1,
        max_length = 255,
        pattern = "^[!#-+\\x2D-~]+$"
    )]
    idempotency_key: Option<String>,
}

/// What the middleware stack may answer on any route: added to every
/// operation of the document (joined with what the route declares).
pub struct StackProblems;

problem_responses! {
    /// The stack's problems on every route.
    struct AnyRoute {
        400 => "A JSON body or the query string holds a control character (or a bidi control in an identifier), or the body could not be read.";
        500 => "The server failed; the failure was logged under the request's id.";
        503 => "Overloaded or the database is busy; retry after `Retry-After`.";
        504 => "The route's time limit passed.";
    }
}

problem_responses! {
    /// The stack's problems on a route that reads a body.
    struct WithBody {
        413 => "The body is larger than the server accepts.";
    }
}

impl StackProblems {
    fn add(operation: &mut Operation) {
        let declared = &mut operation.responses.responses;
        let mut stack = AnyRoute::declare(ProblemResponses::new());
        if operation.request_body.is_some() {
            stack = WithBody::declare(stack);
        }
        for (status, response) in stack.build() {
            // The route's own declaration of a status wins: it knows its types.
            declared.entry(status).or_insert(response);
        }
    }
}

impl Modify for StackProblems {
    fn modify(&self, doc: &mut openapi::OpenApi) {
        for_each_operation(doc, Self::add);
    }
}

/// Makes operation ids unique across domains: utoipa names an operation
/// after its handler (`create`, `list`), which several domains share, so the
/// id becomes `{tag}_{handler}` (`campaigns_create`).
pub struct OperationIds;

impl Modify for OperationIds {
    fn modify(&self, doc: &mut openapi::OpenApi) {
        for_each_operation(doc, |operation| {
            let tag = operation.tags.as_ref().and_then(|tags| tags.first());
            if let (Some(tag), Some(id)) = (tag, &operation.operation_id) {
                operation.operation_id = Some(format!("{}_{id}", tag.replace('-', "_")));
            }
        });
    }
}

fn for_each_operation(doc: &mut openapi::OpenApi, mut f: impl FnMut(&mut Operation)) {
    for item in doc.paths.paths.values_mut() {
        for operation in [
            &mut item.get,
            &mut item.post,
            &mut item.put,
            &mut item.patch,
            &mut item.delete,
            &mut item.head,
            &mut item.options,
            &mut item.trace,
        ]
        .into_iter()
        .flatten()
        {
            f(operation);
        }
    }
}

/// The documented `routes` as an axum router with `GET /api/openapi.json` and
/// the `/docs` page added, and the document they serve.
pub fn serve_docs<S>(routes: OpenApiRouter<S>) -> (Router<S>, openapi::OpenApi)
where
    S: Clone + Send + Sync + 'static,
{
    let (router, mut doc) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(routes)
        .split_for_parts();
    StackProblems.modify(&mut doc);
    OperationIds.modify(&mut doc);
    TimeZoneNames.modify(&mut doc);
    let router = router.merge(SwaggerUi::new(DOCS_PATH).url(OPENAPI_PATH, doc.clone()));
    (router, doc)
}

/// The operations of `doc` as (method, path) pairs, sorted: what the router
/// must route.
pub fn operations(doc: &openapi::OpenApi) -> Vec<(HttpMethod, String)> {
    let mut ops = Vec::new();
    for (path, item) in &doc.paths.paths {
        let methods = [
            (HttpMethod::Get, &item.get),
            (HttpMethod::Post, &item.post),
            (HttpMethod::Put, &item.put),
            (HttpMethod::Patch, &item.patch),
            (HttpMethod::Delete, &item.delete),
            (HttpMethod::Head, &item.head),
            (HttpMethod::Options, &item.options),
            (HttpMethod::Trace, &item.trace),
        ];
        for (method, operation) in methods {
            if operation.is_some() {
                ops.push((method, path.clone()));
            }
        }
    }
    ops
}

/// A JSON schema of an object with one `message` member: what several routes
/// answer (`{"message": "..."}`).
#[derive(Debug, utoipa::ToSchema)]
pub struct Message {
    /// What happened, for a person.
    pub message: String,
}

/// An id in a request body where only a UUID can name anything (a hyphenated
/// UUID, as koldly's ids are): `#[schema(value_type = crate::openapi::Uuid)]`
/// on a `String` field documents what the handler checks with
/// `uuid::Uuid::try_parse`.
#[derive(Debug, utoipa::ToSchema)]
#[schema(
    value_type = String,
    pattern = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
)]
#[allow(dead_code)]
pub struct Uuid(String);

/// An IANA time zone name (`Europe/Paris`) in a request body:
/// `#[schema(value_type = crate::openapi::TimeZoneName)]` on a `String` field.
/// Its `enum` is the tz database compiled into koldly, filled in by
/// [`TimeZoneNames`] when the document is built: a client generated from the
/// document knows which names the server takes.
#[derive(Debug, utoipa::ToSchema)]
#[schema(value_type = String)]
#[allow(dead_code)]
pub struct TimeZoneName(String);

/// Lists the bundled tz database's names as the `enum` of [`TimeZoneName`]
/// (every one of them is accepted: `jiff::tz::TimeZone::get`).
pub struct TimeZoneNames;

impl Modify for TimeZoneNames {
    fn modify(&self, doc: &mut openapi::OpenApi) {
        let Some(components) = doc.components.as_mut() else {
            return;
        };
        if !components.schemas.contains_key("TimeZoneName") {
            return;
        }
        let mut names: Vec<String> = jiff::tz::db()
            .available()
            .map(|name| name.as_str().to_owned())
            .filter(|name| name.len() <= 64 && jiff::tz::TimeZone::get(name).is_ok())
            .collect();
        names.sort();
        let schema = openapi::ObjectBuilder::new()
            .schema_type(openapi::schema::Type::String)
            .description(Some("An IANA time zone name, e.g. `Europe/Paris`."))
            .enum_values(Some(names))
            .build();
        components
            .schemas
            .insert("TimeZoneName".to_owned(), schema.into());
    }
}

/// An email address in a request body, as `auth::normalize_email` takes it
/// (the `email_address` crate's rules with a required top-level domain, at
/// most 254 bytes): `#[schema(value_type = crate::openapi::EmailAddress)]`.
/// The pattern is the common subset (unquoted local part, a dotted host name),
/// so every address it allows is accepted.
#[derive(Debug, utoipa::ToSchema)]
#[schema(
    value_type = String,
    max_length = 254,
    pattern = "^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]{1,64}@[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$"
)]
#[allow(dead_code)]
pub struct EmailAddress(String);
