//! The API description: `GET /openapi.json`, the OpenAPI 3.1 document, and
//! `GET /docs`, an interactive Swagger UI compiled into the binary
//! (`utoipa-swagger-ui`'s `vendored` feature), so both work offline.
//!
//! The document is assembled from the router: [`super::app`] mounts every
//! operation with `utoipa-axum`, from handlers that each carry their
//! `#[utoipa::path]` description, and [`ApiDoc`] adds those operations, with
//! the schemas they refer to, to the title, license and tags declared here.
//! The response schemas are those of the types that write the responses:
//! derived with `ToSchema`, or written beside a type that serializes by hand;
//! the request schemas are those of the types the parsers read the bodies
//! into (`server::request`, `server::openai_request`). The tests hold the document
//! to the real responses: every response the gateway sends in the black-box
//! tests validates against its schema, every operation described is served,
//! and every route is described.

use std::sync::{Arc, LazyLock};

use axum::Json;
use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use utoipa::openapi::OpenApi as Document;
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use utoipa_swagger_ui::Config;

/// Where the document is served.
pub const OPENAPI_PATH: &str = "/openapi.json";
/// Where the interactive page is served.
pub const DOCS_PATH: &str = "/docs";
/// The interactive page itself, which [`DOCS_PATH`] redirects to; its files
/// are under it.
const DOCS_PAGE: &str = "/docs/";
/// The files of the interactive page.
const DOCS_FILES: &str = "/docs/{*file}";

/// The routes of the document and the page, for any router state.
pub fn routes<S: Clone + Send + Sync + 'static>() -> OpenApiRouter<S> {
    OpenApiRouter::default()
        .routes(routes!(openapi_json))
        .routes(routes!(docs_page))
        // The page's files are described by the page's operation.
        .route(DOCS_PAGE, get(docs_file))
        .route(DOCS_FILES, get(docs_file))
}

/// The OpenAPI document of the API.
#[utoipa::path(get, path = OPENAPI_PATH, tag = "ui",
    responses((status = 200, description = "This document", body = Object)))]
async fn openapi_json() -> Response {
    static DOCUMENT: LazyLock<Document> = LazyLock::new(ApiDoc::openapi);
    Json(&*DOCUMENT).into_response()
}

/// The interactive page of the API description, by a redirect to it.
#[utoipa::path(get, path = DOCS_PATH, tag = "ui",
    responses((status = 303, description = "Redirects to `/docs/`, the interactive page (Swagger UI), served from the binary")))]
async fn docs_page() -> Redirect {
    Redirect::to(DOCS_PAGE)
}

/// The Content-Security-Policy of the interactive page: like the operator
/// page's, everything from the gateway itself and nothing else; Swagger UI
/// sets inline styles, and draws its icons from `data:` images.
const DOCS_CSP: &str = "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/// A file of the interactive page (`index.html` for the page itself), its
/// initializer pointing at [`OPENAPI_PATH`]; a plain `404` for any other.
/// Every answer carries [`DOCS_CSP`].
async fn docs_file(file: Option<Path<String>>) -> Response {
    let mut response = docs_file_body(file);
    response.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        header::HeaderValue::from_static(DOCS_CSP),
    );
    response
}

fn docs_file_body(file: Option<Path<String>>) -> Response {
    static CONFIG: LazyLock<Arc<Config<'static>>> =
        LazyLock::new(|| Arc::new(Config::new([OPENAPI_PATH])));
    let name = file.as_ref().map_or("", |Path(name)| name.as_str());
    match utoipa_swagger_ui::serve(name, Arc::clone(&CONFIG)) {
        Ok(Some(file)) if file.gzpipped => (
            [
                (header::CONTENT_TYPE, file.content_type),
                (header::CONTENT_ENCODING, "gzip".to_owned()),
            ],
            file.bytes,
        )
            .into_response(),
        Ok(Some(file)) => ([(header::CONTENT_TYPE, file.content_type)], file.bytes).into_response(),
        Ok(None) => StatusCode::NOT_FOUND.into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// The OpenAPI document of the whole API: its operations are the router's
/// (see [`Operations`]).
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Policy Mesh",
        description = "A local-first AI gateway: each chat request is routed by a YAML policy to a local model or a cloud provider, and every decision says which rule made it and why.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    modifiers(&Operations),
    tags(
        (name = "chat", description = "Chat through the gateway, and dry runs of the policy"),
        (name = "openai", description = "The OpenAI-compatible API: point an OpenAI client's base URL at `/v1`"),
        (name = "anthropic", description = "Anthropic's Messages API: point an Anthropic client's base URL at the gateway"),
        (name = "policy", description = "The live policy"),
        (name = "audit", description = "One event per chat request, without the prompt"),
        (name = "operations", description = "Health and metrics"),
        (name = "ui", description = "The operator page and this description"),
    )
)]
pub struct ApiDoc;

/// Adds the operations the router mounts, and every schema they refer to.
struct Operations;

impl Modify for Operations {
    fn modify(&self, doc: &mut Document) {
        doc.merge(super::api().into_openapi());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    /// `(METHOD, path)` with path parameters renamed `{}`: the names are the
    /// handlers' business.
    fn operation(method: &str, path: &str) -> (String, String) {
        let unnamed = regex::Regex::new(r"\{[^}]*\}")
            .expect("valid")
            .replace_all(path, "{}");
        (method.to_ascii_uppercase(), unnamed.into_owned())
    }

    fn documented() -> BTreeSet<(String, String)> {
        let doc = serde_json::to_value(ApiDoc::openapi()).expect("serializes");
        let paths = doc["paths"].as_object().expect("paths");
        paths
            .iter()
            .flat_map(|(path, item)| {
                item.as_object()
                    .expect("a path item")
                    .keys()
                    .filter(|k| ["get", "post", "put", "patch", "delete"].contains(&k.as_str()))
                    .map(|method| operation(method, path))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    #[test]
    fn the_document_describes_every_part_of_the_api() {
        let documented = documented();
        for (method, path) in [
            ("get", "/v1/routes"),
            ("get", "/v1/ready"),
            ("post", "/v1/chat/completions"),
            ("post", "/v1/messages"),
            ("get", "/v1/audit/{}"),
            ("get", "/ui"),
            ("get", "/"),
            ("get", OPENAPI_PATH),
            ("get", DOCS_PATH),
        ] {
            assert!(
                documented.contains(&operation(method, path)),
                "{method} {path} is not documented: {documented:?}"
            );
        }
        assert_eq!(documented.len(), 17, "{documented:?}");
    }

    #[test]
    fn every_route_is_mounted_with_its_description() {
        // What `routes!` mounts is in the document by construction; a route
        // added to the router any other way would not be. The only such
        // routes are the files of the interactive page, which the `/docs`
        // operation describes.
        let plain = regex::Regex::new(r"\.(route|route_service|nest|nest_service)\(\s*([^,()]+)")
            .expect("valid");
        let mut found: Vec<String> = [
            include_str!("mod.rs"),
            include_str!("handlers.rs"),
            include_str!("gateway.rs"),
            include_str!("openai_api.rs"),
            include_str!("ui.rs"),
            include_str!("openapi.rs"),
        ]
        .into_iter()
        .flat_map(|source| {
            plain
                .captures_iter(source)
                .map(|c| format!("{} {}", &c[1], c[2].trim()))
                .collect::<Vec<_>>()
        })
        .collect();
        found.sort();
        assert_eq!(found, ["route DOCS_FILES", "route DOCS_PAGE"]);
    }

    #[test]
    fn the_document_is_openapi_3_1_with_every_schema_it_refers_to() {
        let text = ApiDoc::openapi().to_json().expect("serializes");
        let doc: serde_json::Value = serde_json::from_str(&text).expect("JSON");
        assert!(
            doc["openapi"]
                .as_str()
                .is_some_and(|v| v.starts_with("3.1"))
        );
        let schemas = doc["components"]["schemas"].as_object().expect("schemas");
        let refs = regex::Regex::new(r##""\$ref":"#/components/schemas/([^"]+)""##).expect("valid");
        let mut seen = 0;
        for c in refs.captures_iter(&text) {
            seen += 1;
            assert!(schemas.contains_key(&c[1]), "no schema {}", &c[1]);
        }
        assert!(seen > 10, "the document refers to {seen} schemas");
    }
}
