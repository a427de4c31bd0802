//! ICP templates (ideal customer profiles): `GET/POST /api/icp-templates`,
//! `PATCH/DELETE /api/icp-templates/{id}`. Lists put favourites first; a
//! campaign created with `icp_template_id` copies the template's description
//! and counts a use (see [`crate::campaigns`]).

use axum::{
    Json,
    extract::State,
    response::{IntoResponse, Response},
};
use http::{HeaderValue, StatusCode, header};
use serde::Deserialize;
use steadfast::audit::AuditContext;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    audit::note_change,
    auth::extract::AuthUser,
    db::{
        icp_templates::{self, IcpTemplate, TemplateFields},
        keyed_creates,
    },
    error::{ApiError, ApiResult},
    keyed::Keyed,
    openapi::{
        IdempotencyKey, Idempotent, InvalidBody, InvalidQuery, NotFound, Problems, Unauthorized,
    },
    pagination::{ListQuery, Page, PageParams},
    state::AppState,
    validation::{FieldErrors, JsonBody, PathId, Resource, nullable},
};

/// Longest name, industry or list item.
pub const NAME_MAX: usize = 200;
/// Longest description.
pub const TEXT_MAX: usize = 5000;
/// Longest value proposition.
pub const VALUE_PROPOSITION_MAX: usize = 2000;
/// Longest company size.
pub const COMPANY_SIZE_MAX: usize = 100;
/// Most job titles or pain points.
pub const LIST_MAX: usize = 50;

const TARGET: &str = "icp_template";

/// What `{id}` names in the ICP template routes.
#[derive(Debug)]
pub struct IcpTemplateResource;

impl Resource for IcpTemplateResource {
    const NAME: &'static str = "ICP template";
}

/// The ICP template routes.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(update, remove))
}

/// A template as sent: for `POST` `name` is required; for `PATCH` absent
/// fields stay and `null` clears a nullable one.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TemplateBody {
    /// Required when creating; absent keeps it; never `null`.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = String, min_length = 1, max_length = 200, pattern = "\\S")]
    name: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    description: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    industry: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    company_size: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(max_items = 50)]
    job_titles: Option<Option<Vec<String>>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(max_items = 50)]
    pain_points: Option<Option<Vec<String>>>,
    #[serde(default, deserialize_with = "nullable")]
    value_proposition: Option<Option<String>>,
    #[serde(default)]
    is_favorite: Option<bool>,
}

/// How `POST /api/icp-templates` is documented: a [`TemplateBody`] whose
/// `name` is required (`PATCH` takes the same body with every member optional).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[schema(as = NewIcpTemplate)]
#[allow(dead_code)]
pub struct NewTemplateBody {
    #[schema(min_length = 1, max_length = 200, pattern = "\\S")]
    name: String,
    #[serde(flatten)]
    template: TemplateBody,
}

impl TemplateBody {
    fn validate(self, creating: bool) -> ApiResult<TemplateFields> {
        let mut errors = FieldErrors::new();
        let name = match self.name {
            None if creating => {
                errors.add("name", "is required");
                None
            }
            None => None,
            Some(None) => {
                errors.add("name", "must not be null");
                None
            }
            Some(Some(name)) => Some(errors.required_text("name", &name, NAME_MAX)),
        };
        let mut text = |field: &str, value: Option<Option<String>>, max: usize| {
            value.map(|v| errors.optional_text(field, v.as_deref(), max))
        };
        let description = text("description", self.description, TEXT_MAX);
        let industry = text("industry", self.industry, NAME_MAX);
        let company_size = text("company_size", self.company_size, COMPANY_SIZE_MAX);
        let value_proposition = text(
            "value_proposition",
            self.value_proposition,
            VALUE_PROPOSITION_MAX,
        );
        let mut list = |field: &str, value: Option<Option<Vec<String>>>| {
            let items = value?.unwrap_or_default();
            if items.len() > LIST_MAX {
                errors.add(field, format!("must have at most {LIST_MAX} items"));
            }
            Some(
                items
                    .iter()
                    .enumerate()
                    .filter_map(|(i, item)| {
                        errors.optional_text(&format!("{field}[{i}]"), Some(item), NAME_MAX)
                    })
                    .collect(),
            )
        };
        let job_titles = list("job_titles", self.job_titles);
        let pain_points = list("pain_points", self.pain_points);
        errors.finish()?;
        Ok(TemplateFields {
            name,
            description,
            industry,
            company_size,
            job_titles,
            pain_points,
            value_proposition,
            is_favorite: self.is_favorite,
        })
    }
}

/// `GET /api/icp-templates?limit=&cursor=`: favourites first, then newest.
#[utoipa::path(
    get,
    path = "/api/icp-templates",
    tag = "icp-templates",
    security(("bearer" = [])),
    params(PageParams),
    responses(
        (status = 200, description = "A page of templates: favourites first, then newest.", body = Page<IcpTemplate>),
        Problems<(Unauthorized, InvalidQuery)>,
    )
)]
async fn list(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    query: ListQuery,
) -> ApiResult<Json<Page<IcpTemplate>>> {
    let page = query.page()?;
    let rows = icp_templates::list(&state.db.pool, &user.id, &page).await?;
    Ok(Json(Page::from_rows(rows, &page, IcpTemplate::cursor)))
}

/// `POST /api/icp-templates`: 201 with `Location`.
#[utoipa::path(
    post,
    path = "/api/icp-templates",
    tag = "icp-templates",
    params(IdempotencyKey),
    security(("bearer" = [])),
    request_body(content = NewTemplateBody, description = "`name` is required."),
    responses(
        (status = 201, description = "The template; `Location` names it.", body = IcpTemplate,
            headers(("location" = String, description = "`/api/icp-templates/{id}`"))),
        Problems<(Unauthorized, InvalidBody, Idempotent)>,
    )
)]
async fn create(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    audit: Option<AuditContext>,
    headers: http::HeaderMap,
    JsonBody(body): JsonBody<TemplateBody>,
) -> ApiResult<Response> {
    note_change(&audit, &user.id, TARGET, "new", None);
    let fields = body.validate(true)?;
    // A retry the idempotency store forgot answers the first run's template.
    let keyed = Keyed::new(&headers, "/api/icp-templates");
    let now = state.now();
    let mut tx = keyed_creates::begin(&state.db).await?;
    let template = match keyed.earlier(&mut tx, &user.id, TARGET, now).await? {
        Some(id) => icp_templates::find(&mut tx, &user.id, &id)
            .await?
            .ok_or_else(|| ApiError::not_found(IcpTemplateResource::NAME))?,
        None => {
            let template = icp_templates::insert(&mut tx, &user.id, &fields, now).await?;
            keyed
                .record(&mut tx, &user.id, TARGET, &template.id, now)
                .await?;
            template
        }
    };
    tx.commit().await?;
    note_change(&audit, &user.id, TARGET, &template.id, None);
    let location = HeaderValue::try_from(format!("/api/icp-templates/{}", template.id))
        .expect("an id is a valid header value");
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(template),
    )
        .into_response())
}

/// `PATCH /api/icp-templates/{id}` (including `is_favorite`).
#[utoipa::path(
    patch,
    path = "/api/icp-templates/{id}",
    tag = "icp-templates",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The template's id")),
    request_body(content = TemplateBody, description = "Absent fields stay; `null` clears a nullable one."),
    responses(
        (status = 200, description = "The template as changed.", body = IcpTemplate),
        Problems<(Unauthorized, NotFound, InvalidBody)>,
    )
)]
async fn update(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    audit: Option<AuditContext>,
    PathId(id, _): PathId<IcpTemplateResource>,
    JsonBody(body): JsonBody<TemplateBody>,
) -> ApiResult<Json<IcpTemplate>> {
    note_change(&audit, &user.id, TARGET, &id, None);
    let fields = body.validate(false)?;
    icp_templates::update(&state.db.pool, &user.id, &id, &fields, state.now())
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(IcpTemplateResource::NAME))
}

/// `DELETE /api/icp-templates/{id}`: 204; campaigns made from it keep their copy.
#[utoipa::path(
    delete,
    path = "/api/icp-templates/{id}",
    tag = "icp-templates",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The template's id")),
    responses(
        (status = 204, description = "Deleted; campaigns made from it keep their copy."),
        Problems<(Unauthorized, NotFound)>,
    )
)]
async fn remove(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    audit: Option<AuditContext>,
    PathId(id, _): PathId<IcpTemplateResource>,
) -> ApiResult<StatusCode> {
    note_change(&audit, &user.id, TARGET, &id, None);
    if icp_templates::delete(&state.db.pool, &user.id, &id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(IcpTemplateResource::NAME))
    }
}
