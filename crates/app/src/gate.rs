//! The checks every request passes before anything answers it, in order (docs/APP.md §2.2);
//! IO-free: it reads the request's head only. The credentials (cookie, key) are checked after
//! it, by the server with [`crate::sessions`].
//!
//! # What a hostile party can make us do
//!
//! - A web page in the user's browser (any site, or a page on another loopback port) can make
//!   the browser send requests here if it guesses the port. DNS rebinding gives it a foreign
//!   `Host` (421); a cross-site request carries its `Origin` and `Sec-Fetch-Site` (403); a form
//!   can only send form, multipart or `text/plain` bodies (415); a WebSocket or a preflight has
//!   no route (405), and no answer ever carries an `Access-Control-*` header, so nothing it sends
//!   lets it read an answer.
//! - Another local process can forge any header: for it the gate is nothing, and the start
//!   token, the cookie and the key are everything.

use axum::http::{HeaderMap, Method, StatusCode, header};

/// Where a request goes, once it passed.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Route {
    /// `GET /s/{token}`: redeems the start token.
    Redeem(String),
    /// `GET /`: the page.
    Index,
    /// `GET /assets/{file}`.
    Asset(String),
    /// `POST /api/call`: one command.
    Call,
    /// `GET /api/events`: the event stream.
    Events,
    /// `POST /api/strength`: how hard a passphrase is to guess.
    Strength,
}

/// Why a request was refused: its status and a word for the log (never the request's content).
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub(crate) status: StatusCode,
    pub(crate) why: &'static str,
}

fn refuse(status: StatusCode, why: &'static str) -> Refusal {
    Refusal { status, why }
}

/// The one value of header `name`, if it appears exactly once and is text.
fn single(headers: &HeaderMap, name: header::HeaderName) -> Result<Option<&str>, ()> {
    let mut it = headers.get_all(name).iter();
    match (it.next(), it.next()) {
        (None, _) => Ok(None),
        (Some(v), None) => v.to_str().map(Some).map_err(|_| ()),
        (Some(_), Some(_)) => Err(()),
    }
}

/// Checks the head of a request to the server at `authority` (`127.0.0.1:PORT`).
pub(crate) fn check(
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    authority: &str,
) -> Result<Route, Refusal> {
    // 1. Host, exactly ours: DNS rebinding names another.
    match single(headers, header::HOST) {
        Ok(Some(h)) if h == authority => {}
        _ => return Err(refuse(StatusCode::MISDIRECTED_REQUEST, "host")),
    }
    // 2. No upgrades (WebSocket), no other methods (a preflight OPTIONS included).
    if headers.contains_key(header::UPGRADE) {
        return Err(refuse(StatusCode::METHOD_NOT_ALLOWED, "upgrade"));
    }
    if ![Method::GET, Method::HEAD, Method::POST].contains(method) {
        return Err(refuse(StatusCode::METHOD_NOT_ALLOWED, "method"));
    }
    // 3. Origin: a POST carries ours; a GET, ours or none.
    let origin = format!("http://{authority}");
    match (single(headers, header::ORIGIN), *method == Method::POST) {
        (Ok(Some(o)), _) if o == origin => {}
        (Ok(None), false) => {}
        _ => return Err(refuse(StatusCode::FORBIDDEN, "origin")),
    }
    let route = route(method, path)?;
    // 4. Fetch metadata: the API and the files are fetched by our own page only; the page is
    //    typed, reloaded or reached from itself; the token's link comes from anywhere (the
    //    token is the credential).
    let site = single(headers, header::HeaderName::from_static("sec-fetch-site")).ok().flatten();
    let site_ok = match &route {
        Route::Redeem(_) => true,
        Route::Index => matches!(site, Some("same-origin" | "none")),
        Route::Asset(_) | Route::Call | Route::Events | Route::Strength => site == Some("same-origin"),
    };
    if !site_ok {
        return Err(refuse(StatusCode::FORBIDDEN, "fetch site"));
    }
    // 6. A command is JSON: a cross-site form cannot send that type.
    if route == Route::Call || route == Route::Strength {
        let json = single(headers, header::CONTENT_TYPE)
            .ok()
            .flatten()
            .and_then(|t| t.split(';').next())
            .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"));
        if !json {
            return Err(refuse(StatusCode::UNSUPPORTED_MEDIA_TYPE, "content type"));
        }
    }
    Ok(route)
}

fn route(method: &Method, path: &str) -> Result<Route, Refusal> {
    let get = *method == Method::GET || *method == Method::HEAD;
    let not_found = || refuse(StatusCode::NOT_FOUND, "path");
    let wrong_method = || refuse(StatusCode::METHOD_NOT_ALLOWED, "method");
    if let Some(t) = path.strip_prefix("/s/") {
        return if *method == Method::GET { Ok(Route::Redeem(t.to_owned())) } else { Err(wrong_method()) };
    }
    if let Some(f) = path.strip_prefix("/assets/") {
        if f.is_empty() || f.contains("..") || f.starts_with('/') {
            return Err(not_found());
        }
        return if get { Ok(Route::Asset(f.to_owned())) } else { Err(wrong_method()) };
    }
    match path {
        "/" => get.then_some(Route::Index).ok_or_else(wrong_method),
        "/api/call" => (*method == Method::POST).then_some(Route::Call).ok_or_else(wrong_method),
        "/api/events" => (*method == Method::GET).then_some(Route::Events).ok_or_else(wrong_method),
        "/api/strength" => (*method == Method::POST).then_some(Route::Strength).ok_or_else(wrong_method),
        _ => Err(not_found()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    const AUTH: &str = "127.0.0.1:4321";

    fn heads(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn api(extra: &[(&'static str, &str)]) -> HeaderMap {
        let mut base = vec![
            ("host", AUTH),
            ("origin", "http://127.0.0.1:4321"),
            ("sec-fetch-site", "same-origin"),
            ("content-type", "application/json"),
        ];
        for (k, v) in extra {
            base.retain(|(b, _)| b != k);
            base.push((k, v));
        }
        heads(&base)
    }

    fn status(r: Result<Route, Refusal>) -> u16 {
        match r {
            Ok(_) => 200,
            Err(e) => e.status.as_u16(),
        }
    }

    #[test]
    fn our_own_page_passes() {
        assert_eq!(check(&Method::POST, "/api/call", &api(&[]), AUTH), Ok(Route::Call));
        assert_eq!(check(&Method::POST, "/api/strength", &api(&[]), AUTH), Ok(Route::Strength));
        let typed = heads(&[("host", AUTH), ("sec-fetch-site", "none")]);
        assert_eq!(check(&Method::GET, "/", &typed, AUTH), Ok(Route::Index));
        let h = api(&[("content-type", "application/json; charset=utf-8")]);
        assert_eq!(check(&Method::POST, "/api/call", &h, AUTH), Ok(Route::Call));
        let link = heads(&[("host", AUTH), ("sec-fetch-site", "cross-site")]);
        assert_eq!(check(&Method::GET, "/s/abc", &link, AUTH), Ok(Route::Redeem("abc".into())));
    }

    #[test]
    fn a_foreign_host_is_misdirected() {
        for host in ["evil.example:4321", "localhost:4321", "127.0.0.1:4322", "127.0.0.1"] {
            let h = api(&[("host", host)]);
            assert_eq!(status(check(&Method::POST, "/api/call", &h, AUTH)), 421, "{host}");
        }
        let mut two = api(&[]);
        two.append("host", HeaderValue::from_static("127.0.0.1:4321"));
        assert_eq!(status(check(&Method::POST, "/api/call", &two, AUTH)), 421);
        let mut none = api(&[]);
        none.remove("host");
        assert_eq!(status(check(&Method::POST, "/api/call", &none, AUTH)), 421);
    }

    #[test]
    fn cross_site_requests_are_refused() {
        for origin in ["http://evil.example", "null", "http://127.0.0.1:4322", "http://localhost:4321"] {
            let h = api(&[("origin", origin)]);
            assert_eq!(status(check(&Method::POST, "/api/call", &h, AUTH)), 403, "{origin}");
        }
        let mut no_origin = api(&[]);
        no_origin.remove("origin");
        assert_eq!(status(check(&Method::POST, "/api/call", &no_origin, AUTH)), 403);
        for site in ["cross-site", "same-site", "none"] {
            let h = api(&[("sec-fetch-site", site)]);
            assert_eq!(status(check(&Method::POST, "/api/call", &h, AUTH)), 403, "{site}");
            let mut g = api(&[("sec-fetch-site", site)]);
            g.remove("origin");
            assert_eq!(status(check(&Method::GET, "/api/events", &g, AUTH)), 403, "{site}");
        }
        for origin in ["http://evil.example", "null"] {
            let h = api(&[("origin", origin)]);
            assert_eq!(status(check(&Method::POST, "/api/strength", &h, AUTH)), 403, "{origin}");
        }
        let h = api(&[("sec-fetch-site", "cross-site")]);
        assert_eq!(status(check(&Method::POST, "/api/strength", &h, AUTH)), 403);
        let h = api(&[("content-type", "text/plain")]);
        assert_eq!(status(check(&Method::POST, "/api/strength", &h, AUTH)), 415);
        let img = heads(&[("host", AUTH), ("sec-fetch-site", "cross-site")]);
        assert_eq!(status(check(&Method::GET, "/", &img, AUTH)), 403);
        assert_eq!(status(check(&Method::GET, "/assets/app.js", &img, AUTH)), 403);
    }

    #[test]
    fn forms_upgrades_and_other_methods_are_refused() {
        for t in ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"] {
            let h = api(&[("content-type", t)]);
            assert_eq!(status(check(&Method::POST, "/api/call", &h, AUTH)), 415, "{t}");
        }
        let h = api(&[("upgrade", "websocket")]);
        assert_eq!(status(check(&Method::GET, "/api/events", &h, AUTH)), 405);
        for m in [Method::OPTIONS, Method::PUT, Method::DELETE, Method::PATCH] {
            assert_eq!(status(check(&m, "/api/call", &api(&[]), AUTH)), 405, "{m}");
        }
        assert_eq!(status(check(&Method::GET, "/api/call", &api(&[]), AUTH)), 405);
        assert_eq!(status(check(&Method::POST, "/nothing", &api(&[]), AUTH)), 404);
        let g = heads(&[("host", AUTH), ("sec-fetch-site", "same-origin")]);
        assert_eq!(status(check(&Method::GET, "/assets/../Cargo.toml", &g, AUTH)), 404);
    }
}
