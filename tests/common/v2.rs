//! A client of the v2 API for the end-to-end tests: requests with tokens, problem checks, and a
//! tournament brought to the end of its draw.
#![allow(dead_code)]

use super::Server;
use serde_json::{json, Value};

pub struct V2 {
    pub http: reqwest::Client,
    pub base: String,
}

/// One player of a drawn tournament.
#[derive(Debug, Clone)]
pub struct Seat {
    pub id: String,
    pub token: String,
    pub name: String,
    pub surname: String,
}

/// A tournament whose players have all joined and picked, and whose teams are drawn.
#[derive(Debug, Clone)]
pub struct Drawn {
    pub id: String,
    pub organiser: String,
    pub seats: Vec<Seat>,
}

impl Drawn {
    pub fn seat(&self, player_id: &str) -> &Seat {
        self.seats.iter().find(|s| s.id == player_id).expect("a player of the tournament")
    }
}

impl V2 {
    pub fn new(server: &Server) -> V2 {
        V2 { http: super::client(), base: server.base.clone() }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn post(&self, path: &str, token: Option<&str>, body: Value) -> reqwest::RequestBuilder {
        let request = self.http.post(self.url(path)).json(&body);
        match token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    pub async fn get(&self, path: &str) -> Value {
        let response = self.http.get(self.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 200, "GET {path}");
        response.json().await.unwrap()
    }

    /// `POST` that must answer `status`; returns the body.
    pub async fn expect(&self, path: &str, token: Option<&str>, body: Value, status: u16) -> Value {
        let response = self.post(path, token, body).send().await.unwrap();
        let got = response.status().as_u16();
        let text = response.text().await.unwrap();
        assert_eq!(got, status, "POST {path}: {text}");
        if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap()
        }
    }

    pub async fn create(&self, name: &str, limit: usize) -> (String, String) {
        let body = self.expect("/api/v2/tournaments", None, json!({"name": name, "playerLimit": limit}), 201).await;
        (body["id"].as_str().unwrap().to_owned(), body["organiserToken"].as_str().unwrap().to_owned())
    }

    pub async fn join(&self, id: &str, name: &str, surname: &str) -> Seat {
        let path = format!("/api/v2/tournaments/{id}/players");
        let body = self.expect(&path, None, json!({"name": name, "surname": surname}), 201).await;
        Seat {
            id: body["playerId"].as_str().unwrap().to_owned(),
            token: body["playerToken"].as_str().unwrap().to_owned(),
            name: name.to_owned(),
            surname: surname.to_owned(),
        }
    }

    /// Creates a tournament of `players`, each picking the next team, and draws.
    pub async fn drawn(&self, name: &str, players: &[(&str, &str)]) -> Drawn {
        let (id, organiser) = self.create(name, players.len()).await;
        let mut seats = Vec::new();
        for (i, (name, surname)) in players.iter().enumerate() {
            let seat = self.join(&id, name, surname).await;
            let path = format!("/api/v2/tournaments/{id}/selection");
            self.expect(&path, Some(&seat.token), json!({"team": super::TEAMS[i]}), 200).await;
            seats.push(seat);
        }
        self.expect(&format!("/api/v2/tournaments/{id}/draw"), Some(&organiser), json!({}), 200).await;
        Drawn { id, organiser, seats }
    }

    /// The stored events of a tournament, as `GET …/events` lists them.
    pub async fn events(&self, id: &str) -> Vec<Value> {
        self.get(&format!("/api/v2/tournaments/{id}/events")).await.as_array().unwrap().clone()
    }
}

/// Checks the RFC 9457 shape and returns the problem.
pub async fn problem(response: reqwest::Response, status: u16) -> Value {
    assert_eq!(response.status(), status);
    assert_eq!(response.headers()["content-type"], "application/problem+json");
    let request_id = response.headers()["x-request-id"].to_str().unwrap().to_owned();
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], status);
    assert_eq!(body["requestId"], request_id.as_str());
    assert!(body["type"].as_str().unwrap().starts_with("urn:lct:problem:"));
    assert!(body["detail"].is_string() && body["title"].is_string());
    body
}

/// The problem type of a refused `POST`, after checking its status and shape.
pub async fn refused(request: reqwest::RequestBuilder, status: u16) -> String {
    let body = problem(request.send().await.unwrap(), status).await;
    body["type"].as_str().unwrap().trim_start_matches("urn:lct:problem:").to_owned()
}
