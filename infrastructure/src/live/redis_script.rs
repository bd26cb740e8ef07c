//! Lua scripts run by their digest (`EVALSHA`): Redis is sent a script's text only when it does
//! not hold the script yet, on the first call and after a restart, a failover or a
//! `SCRIPT FLUSH`. A click's command is then a few hundred bytes instead of the script's
//! kilobyte, which the pod would encode and write, and Redis read and hash, for every click.
//!
//! The commands go through [`ClientLike::custom`], so they carry the caller's options (the Redis
//! client's own Lua calls ignore the options of [`WithOptions`](fred::clients::WithOptions)): a
//! script is sent once and fails fast like every other command of the pod.

use fred::error::Error;
use fred::prelude::{ClientLike, Value};
use fred::types::scripts::Script;
use fred::types::{ClusterHash, CustomCommand, FromValue};

/// Runs `script` with `keys` and `args` by its digest, and by its text when Redis answers that
/// it does not hold it (`EVAL` stores it, so the next call by digest finds it). In a cluster,
/// the command goes to the node of the first key's slot.
pub(super) async fn run<C, R>(client: &C, script: &Script, keys: Vec<String>, args: Vec<String>) -> Result<R, Error>
where
    C: ClientLike,
    R: FromValue,
{
    // The slot is given as a number: given as an argument's position, the client would hash
    // the digest instead.
    let slot = keys.first().map_or(ClusterHash::Random, |key| ClusterHash::from(key.as_str()));
    let command = |script: Value| {
        let mut command = Vec::with_capacity(2 + keys.len() + args.len());
        command.push(script);
        command.push(Value::Integer(keys.len() as i64));
        command.extend(keys.iter().chain(&args).map(|value| Value::from(value.as_str())));
        command
    };
    match client
        .custom(CustomCommand::new_static("EVALSHA", slot.clone(), false), command(script.sha1().clone().into()))
        .await
    {
        Err(error) if error.details().starts_with("NOSCRIPT") => {
            let text = script.lua().cloned().unwrap_or_default();
            client.custom(CustomCommand::new_static("EVAL", slot, false), command(text.into())).await
        }
        reply => reply,
    }
}
