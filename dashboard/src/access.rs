//! Who may see the dashboard: whoever holds the workspace's client token (the one the
//! CLI uses to submit and cancel), as a session cookie or a bearer token.
//!
//! A browser logs in once, with the login form or the one-time URL the coordinator
//! prints at start-up (its code works a single time), and gets a random session id
//! in an HttpOnly, SameSite=Strict cookie: the token itself is never stored in the
//! browser, and scripts cannot read the cookie. Programs (tests, benchmarks) may send
//! `Authorization: Bearer <client token>` instead. The worker token is refused with
//! 403 (workers run jobs; they do not read results), anything else with 401; either
//! way no data is sent. Tokens are compared in constant time ([`Token::matches`]).

use crate::{AppState, DashboardError};
use axum::extract::{Form, Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Redirect, Response};
use expcluster_coordinator::service::auth::{Role, Token, Tokens};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

const COOKIE: &str = "expcluster_session";
/// Sessions kept at once; the oldest is forgotten past this (its browser logs in again).
const MAX_SESSIONS: usize = 256;

pub struct Access {
    client: Token,
    worker: Token,
    sessions: Mutex<VecDeque<Token>>,
    /// The one-time login code, until it is used.
    once: Mutex<Option<Token>>,
    once_code: String,
}

/// What a request presented.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    /// No credentials at all.
    Missing,
    /// The worker token: known, but not for this.
    WorkerToken,
    /// A token or session this dashboard does not know.
    Unknown,
}

fn random(role: Role) -> Result<Token, DashboardError> {
    Token::generate(role).map_err(|err| DashboardError::Random(err.to_string()))
}

impl Access {
    pub fn new(tokens: &Tokens) -> Result<Self, DashboardError> {
        let once = random(Role::Client)?;
        Ok(Self {
            client: tokens.client.clone(),
            worker: tokens.worker.clone(),
            sessions: Mutex::new(VecDeque::new()),
            once_code: once.expose().to_owned(),
            once: Mutex::new(Some(once)),
        })
    }

    pub fn one_time_code(&self) -> &str {
        &self.once_code
    }

    /// Checks a token typed in the login form or sent as a bearer token.
    pub fn check_token(&self, presented: &[u8]) -> Verdict {
        if self.client.matches(presented) {
            Verdict::Allowed
        } else if self.worker.matches(presented) {
            Verdict::WorkerToken
        } else {
            Verdict::Unknown
        }
    }

    /// Checks a request's session cookie, else its bearer token.
    pub fn check(&self, headers: &HeaderMap) -> Verdict {
        if let Some(session) = session_cookie(headers) {
            let sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
            if sessions
                .iter()
                .any(|known| known.matches(session.as_bytes()))
            {
                return Verdict::Allowed;
            }
        }
        match headers.get(header::AUTHORIZATION) {
            Some(value) => {
                self.check_token(value.as_bytes().strip_prefix(b"Bearer ").unwrap_or(b""))
            }
            None if session_cookie(headers).is_some() => Verdict::Unknown,
            None => Verdict::Missing,
        }
    }

    /// Uses the one-time code: true the first time the right code is presented.
    fn redeem(&self, code: &str) -> bool {
        let mut once = self.once.lock().unwrap_or_else(|p| p.into_inner());
        if once
            .as_ref()
            .is_some_and(|known| known.matches(code.as_bytes()))
        {
            *once = None;
            return true;
        }
        false
    }

    /// A new session; its cookie header.
    fn open_session(&self) -> Result<String, DashboardError> {
        let session = random(Role::Client)?;
        let cookie = format!(
            "{COOKIE}={}; HttpOnly; SameSite=Strict; Path=/",
            session.expose()
        );
        let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        if sessions.len() >= MAX_SESSIONS {
            sessions.pop_front();
        }
        sessions.push_back(session);
        Ok(cookie)
    }
}

fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.to_owned())
}

/// The gate in front of every page and API call but the login page.
pub(crate) async fn require_client(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    match state.access.check(request.headers()) {
        Verdict::Allowed => next.run(request).await,
        // A browser with no session (or one from before a restart) goes to the login
        // page; a program gets 401.
        Verdict::Missing | Verdict::Unknown if request.uri().path() == "/" => {
            Redirect::to("/login").into_response()
        }
        verdict => refusal(&verdict),
    }
}

fn refusal(verdict: &Verdict) -> Response {
    let (status, message) = match verdict {
        Verdict::WorkerToken => (
            StatusCode::FORBIDDEN,
            "the worker token cannot read the dashboard: log in with the client token (.expcluster/client.token)",
        ),
        Verdict::Missing => (
            StatusCode::UNAUTHORIZED,
            "the dashboard requires the client token: log in at /login, or send `Authorization: Bearer <.expcluster/client.token>`",
        ),
        Verdict::Unknown | Verdict::Allowed => (
            StatusCode::UNAUTHORIZED,
            "not a valid session or token for this dashboard: log in again at /login with the workspace's current .expcluster/client.token",
        ),
    };
    (status, [(header::WWW_AUTHENTICATE, "Bearer")], message).into_response()
}

#[derive(serde::Deserialize)]
pub(crate) struct LoginQuery {
    once: Option<String>,
}

#[derive(serde::Deserialize)]
pub(crate) struct LoginForm {
    token: String,
}

/// GET /login: the form, or the one-time URL's login.
pub(crate) async fn login_page(
    State(state): State<Arc<AppState>>,
    Query(query): Query<LoginQuery>,
) -> Response {
    match query.once {
        Some(code) if state.access.redeem(&code) => logged_in(&state.access),
        Some(_) => login_html(
            StatusCode::UNAUTHORIZED,
            "This login link was already used or is not this dashboard's: log in with the client token.",
        ),
        None => login_html(StatusCode::OK, ""),
    }
}

/// POST /login: the form's token.
pub(crate) async fn login_form(
    State(state): State<Arc<AppState>>,
    Form(form): Form<LoginForm>,
) -> Response {
    match state.access.check_token(form.token.trim().as_bytes()) {
        Verdict::Allowed => logged_in(&state.access),
        Verdict::WorkerToken => login_html(
            StatusCode::FORBIDDEN,
            "That is the worker token: the dashboard needs the client token (.expcluster/client.token).",
        ),
        Verdict::Missing | Verdict::Unknown => login_html(
            StatusCode::UNAUTHORIZED,
            "Not this workspace's client token (.expcluster/client.token).",
        ),
    }
}

fn logged_in(access: &Access) -> Response {
    match access.open_session() {
        Ok(cookie) => (
            StatusCode::SEE_OTHER,
            [
                (header::SET_COOKIE, cookie),
                (header::LOCATION, "/".to_owned()),
            ],
        )
            .into_response(),
        Err(err) => (StatusCode::INTERNAL_SERVER_ERROR, err.to_string()).into_response(),
    }
}

/// The login page; `message` is one of this file's constants (never user input).
fn login_html(status: StatusCode, message: &'static str) -> Response {
    let page = crate::assets::LOGIN_HTML.replace("{{message}}", message);
    (status, Html(page)).into_response()
}
