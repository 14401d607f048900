//! The operator page (`GET /`, `GET /ui`) and its two assets, compiled into the
//! binary from `static/` so the gateway serves them from any working folder,
//! in a container with no source tree, and offline.
//!
//! The page talks only to this gateway, which the Content-Security-Policy
//! enforces: no script, style or connection may go anywhere else.

use axum::http::header;
use axum::response::IntoResponse;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

const INDEX: &str = include_str!("../../static/index.html");
const CSS: &str = include_str!("../../static/app.css");
const JS: &str = include_str!("../../static/app.js");

/// Everything the page may load: itself, and the favicon it inlines.
const CSP: &str = "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/// The page's routes, for any router state.
pub fn routes<S: Clone + Send + Sync + 'static>() -> OpenApiRouter<S> {
    OpenApiRouter::default()
        .routes(routes!(root))
        .routes(routes!(page))
        .routes(routes!(css))
        .routes(routes!(js))
}

/// The operator page.
#[utoipa::path(get, path = "/", tag = "ui", operation_id = "ui_root",
    responses((status = 200, description = "The operator page", body = String, content_type = "text/html")))]
async fn root() -> impl IntoResponse {
    index().await
}

/// The operator page.
#[utoipa::path(get, path = "/ui", tag = "ui", operation_id = "ui_page",
    responses((status = 200, description = "The operator page", body = String, content_type = "text/html")))]
async fn page() -> impl IntoResponse {
    index().await
}

// `no-cache` (revalidate) rather than a lifetime: the assets change with the
// binary and carry no version in their names.
async fn index() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
            (header::CONTENT_SECURITY_POLICY, CSP),
        ],
        INDEX,
    )
}

/// The operator page's style sheet.
#[utoipa::path(get, path = "/ui/app.css", tag = "ui", operation_id = "ui_css",
    responses((status = 200, description = "The operator page's style sheet", body = String, content_type = "text/css")))]
async fn css() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        CSS,
    )
}

/// The operator page's script.
#[utoipa::path(get, path = "/ui/app.js", tag = "ui", operation_id = "ui_js",
    responses((status = 200, description = "The operator page's script", body = String, content_type = "text/javascript")))]
async fn js() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        JS,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::response::Response;

    async fn parts(response: Response) -> (String, String) {
        assert_eq!(response.status(), axum::http::StatusCode::OK);
        let kind = response.headers()[header::CONTENT_TYPE]
            .to_str()
            .expect("ascii")
            .to_owned();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("body");
        (kind, String::from_utf8(body.to_vec()).expect("utf-8"))
    }

    #[tokio::test]
    async fn the_page_and_its_assets_are_served_with_their_types() {
        for page in [root().await.into_response(), page().await.into_response()] {
            let (kind, body) = parts(page).await;
            assert!(kind.starts_with("text/html"), "{kind}");
            assert!(body.contains(r#"src="/ui/app.js""#));
            assert!(body.contains(r#"href="/ui/app.css""#));
        }
        let (kind, body) = parts(js().await.into_response()).await;
        assert!(kind.starts_with("text/javascript"), "{kind}");
        assert_eq!(body, JS);
        let (kind, body) = parts(css().await.into_response()).await;
        assert!(kind.starts_with("text/css"), "{kind}");
        assert_eq!(body, CSS);
    }

    #[test]
    fn the_page_loads_nothing_from_elsewhere() {
        for (name, text) in [("index.html", INDEX), ("app.css", CSS), ("app.js", JS)] {
            for remote in ["http:", "https:", "//cdn", "@import", "url("] {
                assert!(!text.contains(remote), "static/{name} refers to {remote}");
            }
        }
    }
}
