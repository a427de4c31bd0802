//! OpenAPI with [`utoipa`]: [`Problem`] as a schema, and the problem responses a
//! route can give.
//!
//! What: [`Problem`] implements `utoipa::ToSchema` (named `Problem`: the five
//! RFC 9457 members, extension members allowed), and [`ProblemResponses`]
//! builds the `application/problem+json` responses of an operation — one per
//! status, each saying what it means and, optionally, which problem `type`
//! URIs it carries. [`problem_responses!`](crate::problem_responses) declares
//! such a set as a type implementing `utoipa::IntoResponses` and [`ProblemSet`],
//! so it goes straight into `#[utoipa::path(responses(...))]` beside the
//! route's own responses; [`Problems`] combines several sets (`Problems<(A,
//! B)>`), joining what they say of one status instead of letting the last one
//! win, as utoipa does with two `IntoResponses` of the same status.
//!
//! When: the API is documented with utoipa and its errors are steadfast
//! problems (every steadfast layer answers with one).
//!
//! Cost: none at request time; the document is built when asked for.
//!
//! The responses refer to the schema as `#/components/schemas/Problem`: list
//! `Problem` in the document's components (`components(schemas(Problem))`), as
//! below, so the reference resolves.
//!
//! ```
//! use steadfast::{Problem, problem_responses};
//! use utoipa::OpenApi;
//!
//! problem_responses! {
//!     /// What reading a widget may answer besides 200.
//!     pub struct WidgetProblems {
//!         401 => "No valid bearer token.", types = ["https://example.com/problems/unauthorized"];
//!         404 => "No widget with this id.";
//!     }
//! }
//!
//! #[utoipa::path(
//!     get,
//!     path = "/widgets/{id}",
//!     params(("id" = String, Path, description = "The widget's id")),
//!     responses((status = 200, description = "The widget", body = String), WidgetProblems)
//! )]
//! #[allow(dead_code)]
//! async fn show_widget() {}
//!
//! #[derive(OpenApi)]
//! #[openapi(paths(show_widget), components(schemas(Problem)))]
//! struct ApiDoc;
//!
//! let doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
//! let not_found = &doc["paths"]["/widgets/{id}"]["get"]["responses"]["404"];
//! assert_eq!(
//!     not_found["content"]["application/problem+json"]["schema"]["$ref"],
//!     "#/components/schemas/Problem"
//! );
//! assert_eq!(doc["components"]["schemas"]["Problem"]["required"], serde_json::json!(["status"]));
//! ```

use std::{borrow::Cow, collections::BTreeMap, marker::PhantomData};

use http::StatusCode;
use utoipa::{
    IntoResponses, PartialSchema, ToSchema,
    openapi::{
        ContentBuilder, ObjectBuilder, Ref, RefOr, Response, ResponseBuilder, Schema, Type,
        schema::{AdditionalProperties, AllOfBuilder, SchemaFormat},
    },
};

use crate::problem::{PROBLEM_JSON, Problem};

/// Where [`ProblemResponses`] point: the `Problem` component.
const PROBLEM_REF: &str = "#/components/schemas/Problem";

impl PartialSchema for Problem {
    fn schema() -> RefOr<Schema> {
        let text = |description: &str| {
            ObjectBuilder::new()
                .schema_type(Type::String)
                .description(Some(description))
        };
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .description(Some(
                "An RFC 9457 problem details object, served as application/problem+json. \
                 Members besides the five standard ones are extensions.",
            ))
            .property(
                "type",
                text("A URI naming the kind of problem.")
                    .format(Some(SchemaFormat::Custom("uri-reference".into())))
                    .default(Some("about:blank".into())),
            )
            .property("title", text("A short summary of the kind of problem."))
            .property(
                "status",
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .minimum(Some(100))
                    .maximum(Some(599))
                    .description(Some("The HTTP status of the response.")),
            )
            .required("status")
            .property(
                "detail",
                text("What happened here and what the client can do about it."),
            )
            .property(
                "instance",
                text("A URI for this occurrence.")
                    .format(Some(SchemaFormat::Custom("uri-reference".into()))),
            )
            .additional_properties(Some(AdditionalProperties::FreeForm(true)))
            .into()
    }
}

impl ToSchema for Problem {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Problem")
    }
}

/// The problem responses of an operation, one per status, as
/// `application/problem+json` bodies of the `Problem` schema.
///
/// Declaring a status twice joins the two descriptions and their `type` URIs,
/// so a set shared by many routes can be extended by one route.
#[derive(Debug, Clone, Default)]
pub struct ProblemResponses {
    by_status: BTreeMap<u16, Declared>,
}

#[derive(Debug, Clone, Default)]
struct Declared {
    descriptions: Vec<Cow<'static, str>>,
    types: Vec<Cow<'static, str>>,
    /// Whether some declaration of this status named no type, so any may come.
    any_type: bool,
}

impl ProblemResponses {
    /// No responses yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// A problem answered with `status`, whose `type` member may be anything.
    pub fn response(self, status: StatusCode, description: impl Into<Cow<'static, str>>) -> Self {
        self.declare(status, description.into(), None)
    }

    /// A problem answered with `status` whose `type` member is one of `types`:
    /// the schema says so (`enum`), and the description lists them.
    pub fn typed<T: Into<Cow<'static, str>>>(
        self,
        status: StatusCode,
        description: impl Into<Cow<'static, str>>,
        types: impl IntoIterator<Item = T>,
    ) -> Self {
        let types = types.into_iter().map(Into::into).collect();
        self.declare(status, description.into(), Some(types))
    }

    fn declare(
        mut self,
        status: StatusCode,
        description: Cow<'static, str>,
        types: Option<Vec<Cow<'static, str>>>,
    ) -> Self {
        let entry = self.by_status.entry(status.as_u16()).or_default();
        if !entry.descriptions.contains(&description) {
            entry.descriptions.push(description);
        }
        match types {
            Some(types) if !types.is_empty() => {
                for t in types {
                    if !entry.types.contains(&t) {
                        entry.types.push(t);
                    }
                }
            }
            _ => entry.any_type = true,
        }
        self
    }

    /// The statuses declared, in order.
    pub fn statuses(&self) -> impl Iterator<Item = StatusCode> + '_ {
        self.by_status
            .keys()
            .filter_map(|s| StatusCode::from_u16(*s).ok())
    }

    /// The responses keyed by status, as `utoipa::IntoResponses` returns them.
    pub fn build(self) -> BTreeMap<String, RefOr<Response>> {
        self.by_status
            .into_iter()
            .map(|(status, declared)| (status.to_string(), declared.into_response().into()))
            .collect()
    }
}

impl Declared {
    fn into_response(self) -> Response {
        let mut description = self.descriptions.join(" ");
        let schema: RefOr<Schema> = if self.any_type || self.types.is_empty() {
            Ref::new(PROBLEM_REF).into()
        } else {
            description.push_str(" Problem type: ");
            description.push_str(&self.types.join(", "));
            description.push('.');
            AllOfBuilder::new()
                .item(Ref::new(PROBLEM_REF))
                .item(
                    ObjectBuilder::new().property(
                        "type",
                        ObjectBuilder::new()
                            .schema_type(Type::String)
                            .enum_values(Some(self.types.iter().map(|t| t.to_string()))),
                    ),
                )
                .into()
        };
        ResponseBuilder::new()
            .description(description)
            .content(
                PROBLEM_JSON,
                ContentBuilder::new().schema(Some(schema)).build(),
            )
            .build()
    }
}

impl From<ProblemResponses> for BTreeMap<String, RefOr<Response>> {
    fn from(responses: ProblemResponses) -> Self {
        responses.build()
    }
}

/// A set of problem responses that adds itself to [`ProblemResponses`]:
/// what [`problem_responses!`](crate::problem_responses) declares, and tuples
/// of sets (up to eight).
pub trait ProblemSet {
    /// `responses` with this set's responses added.
    fn declare(responses: ProblemResponses) -> ProblemResponses;
}

impl ProblemSet for () {
    fn declare(responses: ProblemResponses) -> ProblemResponses {
        responses
    }
}

macro_rules! tuple_sets {
    ($($set:ident),+) => {
        impl<$($set: ProblemSet),+> ProblemSet for ($($set,)+) {
            fn declare(responses: ProblemResponses) -> ProblemResponses {
                $(let responses = $set::declare(responses);)+
                responses
            }
        }
    };
}

tuple_sets!(A);
tuple_sets!(A, B);
tuple_sets!(A, B, C);
tuple_sets!(A, B, C, D);
tuple_sets!(A, B, C, D, E);
tuple_sets!(A, B, C, D, E, F);
tuple_sets!(A, B, C, D, E, F, G);
tuple_sets!(A, B, C, D, E, F, G, H);

/// The responses of one or more [`ProblemSet`]s as `utoipa::IntoResponses`:
/// `responses((status = 200, ...), Problems<(Unauthorized, NotFound)>)`.
/// Sets declaring the same status are joined (descriptions and types).
pub struct Problems<T>(PhantomData<T>);

impl<T: ProblemSet> IntoResponses for Problems<T> {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        T::declare(ProblemResponses::new()).build()
    }
}

/// Declares a type implementing `utoipa::IntoResponses` with the problem
/// responses listed, built by [`ProblemResponses`](crate::openapi::ProblemResponses):
/// `STATUS => "description";` or, naming the problem types it carries,
/// `STATUS => "description", types = [URI, ...];`. Statuses are numbers;
/// descriptions and types are any expressions of `&'static str`.
///
/// ```
/// steadfast::problem_responses! {
///     /// What creating a widget may answer besides 201.
///     pub struct CreateWidgetProblems {
///         409 => "A widget with this name exists.";
///         422 => "The widget is invalid.", types = ["https://example.com/problems/validation"];
///     }
/// }
///
/// use utoipa::IntoResponses;
/// let responses = CreateWidgetProblems::responses();
/// assert_eq!(responses.keys().collect::<Vec<_>>(), ["409", "422"]);
/// ```
#[macro_export]
macro_rules! problem_responses {
    ($(#[$meta:meta])* $vis:vis struct $name:ident {
        $($status:literal => $description:expr $(, types = [$($type_uri:expr),* $(,)?])? ;)*
    }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy)]
        $vis struct $name;

        impl $crate::openapi::ProblemSet for $name {
            fn declare(
                responses: $crate::openapi::ProblemResponses,
            ) -> $crate::openapi::ProblemResponses {
                $crate::openapi::__private::declare(responses, &[
                    $(($status, $description, &[$($($type_uri),*)?]),)*
                ])
            }
        }

        impl $crate::openapi::__private::utoipa::IntoResponses for $name {
            fn responses() -> $crate::openapi::__private::Responses {
                <$crate::openapi::Problems<$name> as
                    $crate::openapi::__private::utoipa::IntoResponses>::responses()
            }
        }
    };
}

#[doc(hidden)]
pub mod __private {
    pub use utoipa;

    /// What `IntoResponses::responses` returns.
    pub type Responses = std::collections::BTreeMap<
        String,
        utoipa::openapi::RefOr<utoipa::openapi::response::Response>,
    >;

    /// `responses` with what `problem_responses!` lists added. A status that
    /// is not a valid HTTP status is a mistake in the declaration: it panics
    /// when the document is built.
    pub fn declare(
        responses: super::ProblemResponses,
        declared: &[(u16, &'static str, &[&'static str])],
    ) -> super::ProblemResponses {
        declared
            .iter()
            .fold(responses, |responses, (status, description, types)| {
                let status = http::StatusCode::from_u16(*status)
                    .unwrap_or_else(|_| panic!("{status} is not an HTTP status"));
                responses.typed(status, *description, types.iter().copied())
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn json_of<T: serde::Serialize>(value: &T) -> Value {
        serde_json::to_value(value).unwrap()
    }

    #[test]
    fn problem_schema_names_the_standard_members() {
        assert_eq!(<Problem as ToSchema>::name(), "Problem");
        let schema = json_of(&Problem::schema());
        assert_eq!(schema["type"], "object");
        assert_eq!(schema["required"], json!(["status"]));
        assert_eq!(schema["additionalProperties"], true);
        for member in ["type", "title", "status", "detail", "instance"] {
            assert!(schema["properties"][member].is_object(), "{member}");
        }
        assert_eq!(schema["properties"]["status"]["type"], "integer");
        assert_eq!(schema["properties"]["type"]["default"], "about:blank");
    }

    #[test]
    fn responses_are_problem_json_and_typed_ones_constrain_the_type() {
        let responses = ProblemResponses::new()
            .response(StatusCode::NOT_FOUND, "No such widget.")
            .typed(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Invalid.",
                ["https://example.com/validation"],
            )
            .build();
        assert_eq!(responses.keys().collect::<Vec<_>>(), ["404", "422"]);
        let not_found = json_of(&responses["404"]);
        assert_eq!(not_found["description"], "No such widget.");
        assert_eq!(
            not_found["content"][PROBLEM_JSON]["schema"],
            json!({"$ref": PROBLEM_REF})
        );
        let invalid = json_of(&responses["422"]);
        let all_of = &invalid["content"][PROBLEM_JSON]["schema"]["allOf"];
        assert_eq!(all_of[0], json!({"$ref": PROBLEM_REF}));
        assert_eq!(
            all_of[1]["properties"]["type"]["enum"],
            json!(["https://example.com/validation"])
        );
        assert_eq!(
            invalid["description"],
            "Invalid. Problem type: https://example.com/validation."
        );
    }

    #[test]
    fn declaring_a_status_twice_joins_descriptions_and_types() {
        let responses = ProblemResponses::new()
            .typed(StatusCode::BAD_REQUEST, "Bad query.", ["urn:a"])
            .typed(StatusCode::BAD_REQUEST, "Bad token.", ["urn:b", "urn:a"])
            .build();
        let bad = json_of(&responses["400"]);
        assert_eq!(
            bad["content"][PROBLEM_JSON]["schema"]["allOf"][1]["properties"]["type"]["enum"],
            json!(["urn:a", "urn:b"])
        );
        assert!(
            bad["description"]
                .as_str()
                .unwrap()
                .starts_with("Bad query. Bad token.")
        );
        // An untyped declaration of the same status lets any type through.
        let any = ProblemResponses::new()
            .typed(StatusCode::BAD_REQUEST, "Bad query.", ["urn:a"])
            .response(StatusCode::BAD_REQUEST, "Something else.")
            .build();
        assert_eq!(
            json_of(&any["400"])["content"][PROBLEM_JSON]["schema"],
            json!({"$ref": PROBLEM_REF})
        );
    }

    crate::problem_responses! {
        /// A set for the test.
        struct Declared2 {
            401 => "Unauthorized.", types = ["urn:unauthorized"];
            503 => "Busy.";
        }
    }

    crate::problem_responses! {
        /// Another set for the test, sharing a status with the first.
        struct Other {
            401 => "Expired.", types = ["urn:expired"];
            404 => "Missing.";
        }
    }

    #[test]
    fn problems_joins_sets_that_share_a_status() {
        let responses = Problems::<(Declared2, Other)>::responses();
        assert_eq!(responses.keys().collect::<Vec<_>>(), ["401", "404", "503"]);
        let unauthorized = json_of(&responses["401"]);
        assert_eq!(
            unauthorized["content"][PROBLEM_JSON]["schema"]["allOf"][1]["properties"]["type"]["enum"],
            json!(["urn:unauthorized", "urn:expired"])
        );
        assert!(
            unauthorized["description"]
                .as_str()
                .unwrap()
                .starts_with("Unauthorized. Expired.")
        );
        assert!(Problems::<()>::responses().is_empty());
    }

    #[test]
    fn the_macro_declares_into_responses() {
        use utoipa::IntoResponses;
        let responses = Declared2::responses();
        assert_eq!(responses.keys().collect::<Vec<_>>(), ["401", "503"]);
        assert_eq!(
            json_of(&responses["503"])["content"][PROBLEM_JSON]["schema"]["$ref"],
            PROBLEM_REF
        );
    }
}
