//! Who is calling: with a clients file, every endpoint but the open ones
//! needs a client key (`Authorization: Bearer <key>` or `x-api-key: <key>`,
//! what the OpenAI and Anthropic SDKs send) whose client has the endpoint's
//! scope. Runs after routing (an unknown path is still `404`, a wrong method
//! `405`) and before the body is read (a malformed body without a key is
//! `401`). Refusals come in the shape of the API called and never echo the
//! key; the caller's id rides on the request for the handlers.

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::Response;

use super::{ApiError, AppState};
use crate::names::ClientScope;

/// The client a request comes from: its id (`anonymous` on an open gateway).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The client's id.
    pub id: std::sync::Arc<str>,
    /// Whether it may use the admin scope (on an open gateway: yes).
    pub admin: bool,
}

impl Caller {
    /// The caller of an open gateway.
    pub fn anonymous() -> Self {
        Caller {
            id: std::sync::Arc::from(crate::clients::ANONYMOUS),
            admin: true,
        }
    }
}

/// The scope an endpoint needs; `None`: open to anyone (health, readiness,
/// the operator page and its assets, the API description).
pub fn scope_of(method: &Method, path: &str) -> Option<ClientScope> {
    match (method.as_str(), path) {
        (_, "/v1/health" | "/v1/ready" | "/" | "/ui" | "/ui/app.css" | "/ui/app.js") => None,
        (_, p) if p == "/docs" || p.starts_with("/docs/") || p.starts_with("/openapi") => None,
        (_, "/v1/metrics") => Some(ClientScope::Metrics),
        (_, "/v1/routes") => Some(ClientScope::Admin),
        (_, p) if p.starts_with("/v1/audit") => Some(ClientScope::Admin),
        // The chat APIs, the models, the dry run, and anything added later
        // at least needs a key.
        _ => Some(ClientScope::Chat),
    }
}

/// The key a request carries: `Authorization: Bearer …` wins over
/// `x-api-key`.
fn key_of(headers: &HeaderMap) -> Option<&str> {
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let value = value.to_str().ok()?;
        let (scheme, key) = value.split_once(' ')?;
        return scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| key.trim())
            .filter(|k| !k.is_empty());
    }
    headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|k| !k.is_empty())
}

/// The middleware: admits the request, with its [`Caller`], or refuses it.
pub async fn authenticate(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let Some(clients) = &state.clients else {
        request.extensions_mut().insert(Caller::anonymous());
        return next.run(request).await;
    };
    let path = request.extensions().get::<MatchedPath>().map_or_else(
        || request.uri().path().to_owned(),
        |p| p.as_str().to_owned(),
    );
    let Some(scope) = scope_of(request.method(), &path) else {
        return next.run(request).await;
    };
    let live = clients.snapshot();
    let refusal = match key_of(request.headers()) {
        None => Err((
            "missing",
            ApiError::Unauthenticated(
                "a client key is required: send `Authorization: Bearer <key>` or `x-api-key: <key>`"
                    .to_owned(),
            ),
        )),
        Some(key) => match live.table.authenticate(key) {
            None => Err((
                "unknown",
                ApiError::Unauthenticated("the client key is not known".to_owned()),
            )),
            Some(client) if !client.may(scope) => Err((
                "scope",
                ApiError::Forbidden(format!(
                    "client `{}` may not use this endpoint: it needs the `{scope}` scope",
                    client.id
                )),
            )),
            Some(client) => Ok(Caller {
                id: std::sync::Arc::clone(&client.id),
                admin: client.may(ClientScope::Admin),
            }),
        },
    };
    match refusal {
        Ok(caller) => {
            request.extensions_mut().insert(caller);
            next.run(request).await
        }
        Err((reason, error)) => {
            state.metrics.auth_failure(reason);
            let unauthenticated = matches!(error, ApiError::Unauthenticated(_));
            let mut response = super::error::in_shape_of(request.uri().path(), error);
            if unauthenticated {
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            response
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_path_has_its_scope() {
        let get = Method::GET;
        let post = Method::POST;
        for open in [
            "/v1/health",
            "/v1/ready",
            "/",
            "/ui",
            "/ui/app.js",
            "/docs",
            "/openapi.json",
        ] {
            assert_eq!(scope_of(&get, open), None, "{open}");
        }
        for (method, path, scope) in [
            (&post, "/v1/chat", ClientScope::Chat),
            (&post, "/v1/chat/completions", ClientScope::Chat),
            (&post, "/v1/messages", ClientScope::Chat),
            (&get, "/v1/models", ClientScope::Chat),
            (&get, "/v1/models/{model}", ClientScope::Chat),
            (&post, "/v1/decide", ClientScope::Chat),
            (&get, "/v1/routes", ClientScope::Admin),
            (&get, "/v1/audit/{request_id}", ClientScope::Admin),
            (&get, "/v1/metrics", ClientScope::Metrics),
        ] {
            assert_eq!(scope_of(method, path), Some(scope), "{path}");
        }
    }

    #[test]
    fn the_key_comes_from_authorization_first() {
        let headers = |pairs: &[(&str, &str)]| {
            let mut h = HeaderMap::new();
            for (k, v) in pairs {
                h.insert(
                    axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap_or(header::ACCEPT),
                    HeaderValue::from_str(v).unwrap_or(HeaderValue::from_static("")),
                );
            }
            h
        };
        assert_eq!(
            key_of(&headers(&[("authorization", "Bearer pm_a")])),
            Some("pm_a")
        );
        assert_eq!(
            key_of(&headers(&[("authorization", "bearer  pm_a ")])),
            Some("pm_a")
        );
        assert_eq!(key_of(&headers(&[("x-api-key", "pm_b")])), Some("pm_b"));
        assert_eq!(
            key_of(&headers(&[
                ("authorization", "Bearer pm_a"),
                ("x-api-key", "pm_b")
            ])),
            Some("pm_a")
        );
        assert_eq!(key_of(&headers(&[("authorization", "Basic pm_a")])), None);
        assert_eq!(key_of(&headers(&[("authorization", "Bearer ")])), None);
        assert_eq!(key_of(&headers(&[])), None);
    }
}
