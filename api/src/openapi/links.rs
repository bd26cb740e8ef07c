//! OpenAPI links: how the answer of one operation feeds the next (the new tournament's id, the
//! organiser and player tokens, the joined player's names). Clients can read the flow from them,
//! and schema-driven testing follows them to act on tournaments it has just created.

use serde_json::{json, Value};

/// One link: from the `status` answer of operation `from`, to operation `to`, with parameters
/// (`"path.id"`, `"header.Authorization"`, …) and request body properties given as runtime
/// expressions.
struct Link {
    from: &'static str,
    status: &'static str,
    to: &'static str,
    parameters: &'static [(&'static str, &'static str)],
    body: Option<fn() -> Value>,
}

const fn link(
    from: &'static str,
    status: &'static str,
    to: &'static str,
    parameters: &'static [(&'static str, &'static str)],
) -> Link {
    Link { from, status, to, parameters, body: None }
}

const CREATED_ID: &[(&str, &str)] = &[("path.id", "$response.body#/id")];
const CREATED_ORGANISER: &[(&str, &str)] =
    &[("path.id", "$response.body#/id"), ("header.Authorization", "Bearer {$response.body#/organiserToken}")];
const JOINED_ID: &[(&str, &str)] = &[("path.id", "$request.path.id")];
const JOINED_PLAYER: &[(&str, &str)] =
    &[("path.id", "$request.path.id"), ("header.Authorization", "Bearer {$response.body#/playerToken}")];
const V1_ID: &[(&str, &str)] = &[("query.id", "$response.body")];
const SAME_TOURNAMENT: &[(&str, &str)] = &[("path.id", "$request.path.id")];
const FIRST_MATCH: &[(&str, &str)] =
    &[("path.id", "$request.path.id"), ("path.number", "$response.body#/matches/0/number")];
const SAME_MATCH: &[(&str, &str)] = &[("path.id", "$request.path.id"), ("path.number", "$request.path.number")];
const V1_TOURNAMENT_ID: &[(&str, &str)] = &[("query.tournamentId", "$response.body")];

const LINKS: &[Link] = &[
    link("v2CreateTournament", "201", "v2GetTournament", CREATED_ID),
    link("v2CreateTournament", "201", "v2RenameTournament", CREATED_ORGANISER),
    link("v2CreateTournament", "201", "v2JoinTournament", CREATED_ID),
    link("v2CreateTournament", "201", "v2Draw", CREATED_ORGANISER),
    link("v2CreateTournament", "201", "v2ListTeams", CREATED_ID),
    link("v2CreateTournament", "201", "v2ListEvents", CREATED_ID),
    link("v2CreateTournament", "201", "v2Presence", CREATED_ID),
    link("v2CreateTournament", "201", "v2GetFixtures", CREATED_ID),
    link("v2CreateTournament", "201", "v2GetStandings", CREATED_ID),
    link("v2Draw", "200", "v2ScheduleFixtures", SAME_TOURNAMENT),
    link("v2ScheduleFixtures", "201", "v2RecordResult", FIRST_MATCH),
    link("v2ScheduleFixtures", "201", "v2GetFixtures", SAME_TOURNAMENT),
    link("v2ScheduleFixtures", "201", "v2GetStandings", SAME_TOURNAMENT),
    link("v2RecordResult", "200", "v2RecordResult", SAME_MATCH),
    link("v2RecordResult", "200", "v2FinishNight", SAME_TOURNAMENT),
    link("v2RecordResult", "200", "v2GetStandings", SAME_TOURNAMENT),
    link("v2JoinTournament", "201", "v2SelectTeam", JOINED_PLAYER),
    link("v2JoinTournament", "201", "v2ClickTeam", JOINED_PLAYER),
    link("v2JoinTournament", "201", "v2GetTournament", JOINED_ID),
    link("v1CreateTournament", "200", "v1GetTournament", V1_ID),
    link("v1CreateTournament", "200", "v1ListTeams", V1_TOURNAMENT_ID),
    link("v1CreateTournament", "200", "v1Draw", V1_TOURNAMENT_ID),
    link("v1CreateTournament", "200", "v1DrawByPost", V1_TOURNAMENT_ID),
    link("v1CreateTournament", "200", "v1TournamentQr", V1_TOURNAMENT_ID),
    Link {
        body: Some(|| json!({"tournamentId": "$response.body"})),
        ..link("v1CreateTournament", "200", "v1AssignPlayer", &[])
    },
    Link {
        body: Some(|| {
            json!({
                "tournamentId": "$request.body#/tournamentId",
                "playerName": "$request.body#/name",
                "playerSurname": "$request.body#/surname",
            })
        }),
        ..link("v1AssignPlayer", "200", "v1SelectTeam", &[])
    },
];

/// Adds the links to the operations of the document (in its JSON form: utoipa 5 writes the
/// properties of its `Link` in snake case). Panics on a link between operations the document
/// does not have, so a renamed operation cannot silently drop its links.
pub fn add(document: &mut Value) {
    for link in LINKS {
        assert!(operation(document, link.to).is_some(), "link to unknown operation {}", link.to);
        let source =
            operation(document, link.from).unwrap_or_else(|| panic!("link from unknown operation {}", link.from));
        let Some(response) = source.pointer_mut(&format!("/responses/{}", link.status)).and_then(Value::as_object_mut)
        else {
            panic!("{} has no {} response to link from", link.from, link.status);
        };
        assert!(
            !response.contains_key("$ref"),
            "{} {} is a shared response; links need its own",
            link.from,
            link.status
        );
        let mut definition = json!({"operationId": link.to});
        if !link.parameters.is_empty() {
            definition["parameters"] =
                link.parameters.iter().map(|(name, expression)| ((*name).to_owned(), json!(expression))).collect();
        }
        if let Some(body) = link.body {
            definition["requestBody"] = body();
        }
        let name = link.to.trim_start_matches("v1").trim_start_matches("v2");
        let links = response.entry("links").or_insert_with(|| json!({}));
        links[name] = definition;
    }
}

/// The operation with this `operationId`.
fn operation<'a>(document: &'a mut Value, id: &str) -> Option<&'a mut Value> {
    document["paths"]
        .as_object_mut()?
        .values_mut()
        .filter_map(Value::as_object_mut)
        .flat_map(|item| item.values_mut())
        .find(|op| op["operationId"] == id)
}
