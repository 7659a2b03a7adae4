//! What the OpenAPI document says of every call beyond its own
//! annotations: the bearer token scheme, and the refusals any call may get
//! from the layers in front of the handlers (tokens, sizes, methods).

use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{
    ComponentsBuilder, ContentBuilder, ObjectBuilder, OpenApi, Ref, RefOr, Response,
    ResponseBuilder, Type,
};

/// Name of the bearer token scheme in the document's components.
const BEARER: &str = "bearer";

/// Adds to `doc` the bearer scheme (tokens are checked only by
/// coordinators started with `--auth-tokens`, so a call without one is
/// described too), and on every operation the 401 (with
/// `WWW-Authenticate`) and 414 it may get, the 403 of a changing call
/// (a read-only token), and the 413 of a call with a body. A 405 answers a
/// method a path lacks, so no operation has it: it is a reusable response
/// (`MethodNotAllowed`) of the components.
pub fn complete(doc: &mut OpenApi) {
    let components = doc
        .components
        .get_or_insert_with(|| ComponentsBuilder::new().build());
    components.add_security_scheme(
        BEARER,
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .description(Some(
                    "A token of the coordinator's tokens file (`--auth-tokens`): a read-only \
                     token for GET calls, an operator token for the others. Without \
                     `--auth-tokens`, calls need none.",
                ))
                .build(),
        ),
    );
    components.responses.insert(
        "MethodNotAllowed".into(),
        RefOr::T(error(
            "`method_not_allowed`: the path has no call of this method",
        )),
    );
    doc.security = Some(vec![
        SecurityRequirement::new(BEARER, Vec::<String>::new()),
        SecurityRequirement::default(),
    ]);
    for item in doc.paths.paths.values_mut() {
        let operations = [
            (&mut item.get, false),
            (&mut item.post, true),
            (&mut item.put, true),
            (&mut item.patch, true),
            (&mut item.delete, true),
        ];
        for (operation, changes) in operations {
            if let Some(operation) = operation {
                refusals(operation, changes);
            }
        }
    }
}

/// The layers' refusals `operation` may get; `changes`: it needs an
/// operator token.
fn refusals(operation: &mut Operation, changes: bool) {
    let responses = &mut operation.responses.responses;
    let unauthenticated = ResponseBuilder::from(error(
        "`unauthenticated`: the coordinator checks tokens and the call carries none it \
         accepts",
    ))
    .header(
        "WWW-Authenticate",
        HeaderBuilder::new()
            .schema(ObjectBuilder::new().schema_type(Type::String))
            .description(Some("`Bearer`: the scheme the token is sent with"))
            .build(),
    )
    .build();
    responses.insert("401".into(), RefOr::T(unauthenticated));
    if changes {
        responses.insert(
            "403".into(),
            RefOr::T(error(
                "`permission_denied`: the token is read-only and the call needs an operator token",
            )),
        );
    }
    if operation.request_body.is_some() {
        responses.insert(
            "413".into(),
            RefOr::T(error("`body_too_large`: the body is over 2 MiB")),
        );
    }
    responses.insert(
        "414".into(),
        RefOr::T(error("`uri_too_long`: the URI is over 8 KiB")),
    );
}

/// An answer of an `ApiError` document.
fn error(description: &str) -> Response {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("ApiError")))
                .build(),
        )
        .build()
}

#[cfg(test)]
mod tests {
    use utoipa::openapi::RefOr;

    #[test]
    fn every_call_documents_the_token_refusals_and_the_layers_limits() {
        let doc = super::super::openapi();
        let json = serde_json::to_value(&doc).unwrap_or_default();
        assert_eq!(
            json["components"]["securitySchemes"]["bearer"]["scheme"], "bearer",
            "{json}"
        );
        assert_eq!(json["security"][0]["bearer"], serde_json::json!([]));
        let mut seen = 0;
        for (path, item) in &doc.paths.paths {
            for (method, operation, changes) in [
                ("get", &item.get, false),
                ("post", &item.post, true),
                ("delete", &item.delete, true),
            ] {
                let Some(operation) = operation else { continue };
                seen += 1;
                let codes = &operation.responses.responses;
                let what = format!("{method} {path}");
                let Some(RefOr::T(unauthenticated)) = codes.get("401") else {
                    panic!("{what}: no 401");
                };
                assert!(
                    unauthenticated.headers.contains_key("WWW-Authenticate"),
                    "{what}"
                );
                assert!(codes.contains_key("414"), "{what}");
                assert_eq!(codes.contains_key("403"), changes, "{what}");
                assert_eq!(
                    codes.contains_key("413"),
                    operation.request_body.is_some(),
                    "{what}"
                );
            }
        }
        assert_eq!(seen, 14);
        let codes = json["components"]["schemas"]["ApiError"]["properties"]["code"]["description"]
            .as_str()
            .unwrap_or_default();
        assert!(
            codes.contains("`unauthenticated`") && codes.contains("`permission_denied`"),
            "{codes}"
        );
        assert!(json["components"]["responses"]["MethodNotAllowed"].is_object());
    }
}
