//! Presence, idempotency keys and the pod registry in Redis, on the same connection as the
//! shared state ([`RedisSharedState`] implements their ports). Every call fails fast while Redis
//! is down or slow, like the rest of the shared state.
//!
//! Keys:
//! - `lct:idem:{key}`: an idempotency key, the claimant's marker while its request runs (`""` when
//!   a pod of an earlier release claimed it), then the stored response. Scripts claim it only when
//!   it holds nothing, and complete or release it only while it holds the caller's marker: a
//!   command that outlived its lease leaves the key to whoever claimed it next.
//! - `lct:presence:{tournament}`: a hash with a field `{player_id}|{pod}` per connected player and
//!   pod (value: the entry as JSON), and `lct:pod-presence:{pod}`: the set of
//!   `{tournament}|{player_id}` that pod holds, so that its entries can be found when it dies.
//!   Both expire `ttl` after the last join; the set is also kept alive by the pod while it lives
//!   ([`PresenceStore::keep_pod`]).
//! - `lct:secret:{name}`: a value all pods agree on (see [`SharedSecrets`]), without expiry.
//! - `lct:{pods}`: a hash with a field per registered pod, and `lct:{pods}:pod:<id>`: the pod's
//!   latest heartbeat as JSON, expiring when its lapse ends. A field whose key has expired is a
//!   dead pod; a script removes it only while its key is still missing, so exactly one pruner
//!   wins it. The braces are a hash tag: in a Redis Cluster every registry key is in one slot,
//!   which the script (and `MGET` of the heartbeats) need.
//!
//! Every other command touches one key, so the other keys need no hash tag: in a cluster they
//! spread over the shards (a pipeline of commands on several keys goes to each key's shard).

use super::online_order;
use super::redis::{millis, RedisSharedState};
use super::redis_script;
use async_trait::async_trait;
use fred::clients::Pipeline;
use fred::prelude::{Expiration, HashesInterface, KeysInterface, SetOptions, SetsInterface};
use fred::types::scripts::Script;
use live::ports::{
    IdempotencyClaim, IdempotencyStore, LiveError, PodInfo, PodRegistry, PresenceEntry, PresenceStore, SharedSecrets,
};
use std::collections::BTreeSet;
use std::sync::LazyLock;
use std::time::Duration;
use uuid::Uuid;

/// The registry of pods: one field per registered pod. `{pods}` is the hash tag of every
/// registry key (see the module documentation).
pub const PODS_KEY: &str = "lct:{pods}";

/// Removes each given pod (ARGV) from the registry (KEYS[1]) whose heartbeat key (KEYS[i + 1])
/// is gone, and returns those it removed: the check and the removal are one atomic step, so a
/// pod is removed by one caller only, and never right after it sent a heartbeat.
const PRUNE_SCRIPT: &str = r"
local removed = {}
for i, id in ipairs(ARGV) do
  if redis.call('EXISTS', KEYS[i + 1]) == 0 and redis.call('HDEL', KEYS[1], id) == 1 then
    removed[#removed + 1] = id
  end
end
return removed
";
static PRUNE: LazyLock<Script> = LazyLock::new(|| Script::from_lua(PRUNE_SCRIPT));

/// Sets KEYS[1] to the marker ARGV[1] for ARGV[2] ms unless it holds a value, and returns that
/// value (nil when it was claimed): one atomic step, so a key is never read between its expiry
/// and a claim.
const CLAIM_SCRIPT: &str = r"
local held = redis.call('GET', KEYS[1])
if held then
  return held
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return false
";
static CLAIM: LazyLock<Script> = LazyLock::new(|| Script::from_lua(CLAIM_SCRIPT));

/// Replaces the marker ARGV[1] of KEYS[1] with the response ARGV[2] for ARGV[3] ms, only while
/// the key holds that marker; returns 1 when it did.
const COMPLETE_SCRIPT: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0
";
static COMPLETE: LazyLock<Script> = LazyLock::new(|| Script::from_lua(COMPLETE_SCRIPT));

/// Deletes KEYS[1] only while it holds the marker ARGV[1]; returns 1 when it did.
const RELEASE_SCRIPT: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
";
static RELEASE: LazyLock<Script> = LazyLock::new(|| Script::from_lua(RELEASE_SCRIPT));

fn idempotency_key(key: &str) -> String {
    format!("lct:idem:{key}")
}

fn secret_key(name: &str) -> String {
    format!("lct:secret:{name}")
}

fn presence_key(tournament: Uuid) -> String {
    format!("lct:presence:{tournament}")
}

fn pod_presence_key(pod: &str) -> String {
    format!("lct:pod-presence:{pod}")
}

fn presence_field(player: Uuid, pod: &str) -> String {
    format!("{player}|{pod}")
}

fn pod_presence_member(tournament: Uuid, player: Uuid) -> String {
    format!("{tournament}|{player}")
}

/// The heartbeat key of a pod, in the registry's slot.
pub fn pod_key(id: &str) -> String {
    format!("{PODS_KEY}:pod:{id}")
}

/// Decodes the values of a presence hash, skipping (and logging) what cannot be read.
fn decode_presence(tournament: Uuid, values: Vec<String>) -> Vec<PresenceEntry> {
    online_order(values.into_iter().filter_map(|json| match serde_json::from_str::<PresenceEntry>(&json) {
        Ok(entry) => Some(entry),
        Err(error) => {
            tracing::warn!(%tournament, %error, "an unreadable presence entry was skipped");
            None
        }
    }))
}

#[async_trait]
impl SharedSecrets for RedisSharedState {
    /// Errors: Redis is down or does not answer in time.
    async fn agree(&self, name: &str, proposal: &str) -> Result<String, LiveError> {
        let client = self.client()?;
        let key = secret_key(name);
        let error = |error| self.error("agreeing on a shared secret", error);
        let stored: Option<String> =
            client.set(&key, proposal, None, Some(SetOptions::NX), false).await.map_err(error)?;
        if stored.is_some() {
            return Ok(proposal.to_owned());
        }
        let held: Option<String> = client.get(&key).await.map_err(error)?;
        held.ok_or_else(|| LiveError(format!("the shared secret {name} vanished while it was read")))
    }
}

#[async_trait]
impl IdempotencyStore for RedisSharedState {
    /// Errors: Redis is down or does not answer in time.
    async fn claim(&self, key: &str, marker: &str, ttl: Duration) -> Result<IdempotencyClaim, LiveError> {
        let args = vec![marker.to_owned(), millis(ttl).to_string()];
        let held: Option<String> = redis_script::run(&self.client()?, &CLAIM, vec![idempotency_key(key)], args)
            .await
            .map_err(|error| self.error("claiming an idempotency key", error))?;
        Ok(held.map_or(IdempotencyClaim::Claimed, IdempotencyClaim::Held))
    }

    /// Errors: Redis is down or does not answer in time.
    async fn complete(&self, key: &str, marker: &str, response: &str, ttl: Duration) -> Result<bool, LiveError> {
        let args = vec![marker.to_owned(), response.to_owned(), millis(ttl).to_string()];
        let done: i64 = redis_script::run(&self.client()?, &COMPLETE, vec![idempotency_key(key)], args)
            .await
            .map_err(|error| self.error("completing an idempotency key", error))?;
        Ok(done == 1)
    }

    /// Errors: Redis is down or does not answer in time.
    async fn release(&self, key: &str, marker: &str) -> Result<bool, LiveError> {
        let released: i64 =
            redis_script::run(&self.client()?, &RELEASE, vec![idempotency_key(key)], vec![marker.to_owned()])
                .await
                .map_err(|error| self.error("releasing an idempotency key", error))?;
        Ok(released == 1)
    }
}

#[async_trait]
impl PresenceStore for RedisSharedState {
    /// Errors: Redis is down or does not answer in time.
    async fn join(
        &self,
        tournament: Uuid,
        entry: &PresenceEntry,
        pod: &str,
        ttl: Duration,
    ) -> Result<Vec<PresenceEntry>, LiveError> {
        let json =
            serde_json::to_string(entry).map_err(|error| LiveError(format!("encoding a presence entry: {error}")))?;
        let (key, owned) = (presence_key(tournament), pod_presence_key(pod));
        let error = |error| self.error("recording presence", error);

        let pipeline = Pipeline::from(self.client()?);
        let () = pipeline.hset(&key, (presence_field(entry.player_id, pod), json)).await.map_err(error)?;
        let () = pipeline.pexpire(&key, millis(ttl), None).await.map_err(error)?;
        let () = pipeline.sadd(&owned, pod_presence_member(tournament, entry.player_id)).await.map_err(error)?;
        let () = pipeline.pexpire(&owned, millis(ttl), None).await.map_err(error)?;
        let () = pipeline.hvals(&key).await.map_err(error)?;
        let (_, _, _, _, values): (i64, i64, i64, i64, Vec<String>) = pipeline.all().await.map_err(error)?;
        Ok(decode_presence(tournament, values))
    }

    /// Errors: Redis is down or does not answer in time.
    async fn leave(&self, tournament: Uuid, player_id: Uuid, pod: &str) -> Result<Vec<PresenceEntry>, LiveError> {
        let key = presence_key(tournament);
        let error = |error| self.error("clearing presence", error);

        let pipeline = Pipeline::from(self.client()?);
        let () = pipeline.hdel(&key, presence_field(player_id, pod)).await.map_err(error)?;
        let () =
            pipeline.srem(pod_presence_key(pod), pod_presence_member(tournament, player_id)).await.map_err(error)?;
        let () = pipeline.hvals(&key).await.map_err(error)?;
        let (_, _, values): (i64, i64, Vec<String>) = pipeline.all().await.map_err(error)?;
        Ok(decode_presence(tournament, values))
    }

    /// Errors: Redis is down or does not answer in time.
    async fn online(&self, tournament: Uuid) -> Result<Vec<PresenceEntry>, LiveError> {
        let values: Vec<String> = self
            .client()?
            .hvals(presence_key(tournament))
            .await
            .map_err(|error| self.error("reading presence", error))?;
        Ok(decode_presence(tournament, values))
    }

    /// Removes every field of `pod` named in its set, then the set. Returns the tournaments
    /// where an entry was removed, in id order. Errors: Redis is down or does not answer in time.
    async fn clear_pod(&self, pod: &str) -> Result<Vec<Uuid>, LiveError> {
        let owned = pod_presence_key(pod);
        let error = |error| self.error("clearing a pod's presence", error);
        let client = self.client()?;
        let members: Vec<String> = client.smembers(&owned).await.map_err(error)?;
        let held: Vec<(Uuid, Uuid)> = members
            .iter()
            .filter_map(|member| {
                let (tournament, player) = member.split_once('|')?;
                Some((Uuid::parse_str(tournament).ok()?, Uuid::parse_str(player).ok()?))
            })
            .collect();

        let pipeline = Pipeline::from(client);
        for (tournament, player) in &held {
            let () = pipeline.hdel(presence_key(*tournament), presence_field(*player, pod)).await.map_err(error)?;
        }
        let () = pipeline.del(&owned).await.map_err(error)?;
        let removed: Vec<i64> = pipeline.all().await.map_err(error)?;

        let touched: BTreeSet<Uuid> = held
            .iter()
            .zip(&removed)
            .filter(|(_, removed)| **removed > 0)
            .map(|((tournament, _), _)| *tournament)
            .collect();
        Ok(touched.into_iter().collect())
    }

    /// Extends the expiry of the pod's set of entries: the tournaments' lists live on through
    /// anyone's joins, and the set is how they are cleared when the pod dies. The set exists
    /// while it names an entry. Errors: Redis is down or does not answer in time.
    async fn keep_pod(&self, pod: &str, ttl: Duration) -> Result<bool, LiveError> {
        let kept: i64 = self
            .client()?
            .pexpire(pod_presence_key(pod), millis(ttl), None)
            .await
            .map_err(|error| self.error("keeping a pod's presence", error))?;
        Ok(kept == 1)
    }
}

#[async_trait]
impl PodRegistry for RedisSharedState {
    /// Errors: Redis is down or does not answer in time.
    async fn heartbeat(&self, pod: &PodInfo, lapse: Duration) -> Result<bool, LiveError> {
        let json = serde_json::to_string(pod).map_err(|error| LiveError(format!("encoding a pod: {error}")))?;
        let error = |error| self.error("sending a heartbeat", error);

        let pipeline = Pipeline::from(self.client()?);
        let () = pipeline
            .set(pod_key(&pod.id), json, Some(Expiration::PX(millis(lapse))), None, false)
            .await
            .map_err(error)?;
        let () = pipeline.hset(PODS_KEY, (pod.id.as_str(), pod.started_at_ms)).await.map_err(error)?;
        let (_, added): (String, i64) = pipeline.all().await.map_err(error)?;
        Ok(added > 0)
    }

    /// Errors: Redis is down or does not answer in time (the pod then lapses instead).
    async fn deregister(&self, id: &str) -> Result<(), LiveError> {
        let error = |error| self.error("deregistering a pod", error);
        let pipeline = Pipeline::from(self.client()?);
        let () = pipeline.hdel(PODS_KEY, id).await.map_err(error)?;
        let () = pipeline.del(pod_key(id)).await.map_err(error)?;
        let _: (i64, i64) = pipeline.all().await.map_err(error)?;
        Ok(())
    }

    /// The registered pods whose heartbeat has not lapsed (a dead pod not yet pruned is not
    /// listed). Errors: Redis is down or does not answer in time.
    async fn live_pods(&self) -> Result<Vec<PodInfo>, LiveError> {
        let error = |error| self.error("listing the pods", error);
        let client = self.client()?;
        let ids: Vec<String> = client.hkeys(PODS_KEY).await.map_err(error)?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = ids.iter().map(|id| pod_key(id)).collect();
        let beats: Vec<Option<String>> = client.mget(keys).await.map_err(error)?;
        let mut pods: Vec<PodInfo> = ids
            .iter()
            .zip(beats)
            .filter_map(|(id, json)| match serde_json::from_str::<PodInfo>(&json?) {
                Ok(pod) => Some(pod),
                Err(error) => {
                    tracing::warn!(pod = %id, %error, "an unreadable pod heartbeat was skipped");
                    None
                }
            })
            .collect();
        pods.sort_by(|a, b| (a.started_at_ms, &a.id).cmp(&(b.started_at_ms, &b.id)));
        Ok(pods)
    }

    /// Errors: Redis is down or does not answer in time.
    async fn prune(&self) -> Result<Vec<String>, LiveError> {
        let error = |error| self.error("pruning the pods", error);
        let client = self.client()?;
        let ids: Vec<String> = client.hkeys(PODS_KEY).await.map_err(error)?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut keys = Vec::with_capacity(ids.len() + 1);
        keys.push(PODS_KEY.to_owned());
        keys.extend(ids.iter().map(|id| pod_key(id)));
        redis_script::run(&client, &PRUNE, keys, ids).await.map_err(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_the_documented_layout() {
        let (t, p) = (Uuid::nil(), Uuid::max());
        assert_eq!(idempotency_key("abc"), "lct:idem:abc");
        assert_eq!(presence_key(t), format!("lct:presence:{t}"));
        assert_eq!(presence_field(p, "pod-1"), format!("{p}|pod-1"));
        assert_eq!(pod_presence_key("pod-1"), "lct:pod-presence:pod-1");
        assert_eq!(pod_presence_member(t, p), format!("{t}|{p}"));
        assert_eq!(pod_key("pod-1"), "lct:{pods}:pod:pod-1");
        assert_eq!(PODS_KEY, "lct:{pods}");
    }

    #[test]
    fn the_registry_keys_share_one_cluster_slot() {
        let slot = super::super::redis_shards::slot;
        for id in ["pod-1", "lct-7d9f-x2", "a{b}c", "}{"] {
            assert_eq!(slot(&pod_key(id)), slot(PODS_KEY), "{id}");
        }
    }

    #[test]
    fn unreadable_presence_is_skipped_and_the_rest_ordered() {
        let ann = PresenceEntry { player_id: Uuid::new_v4(), name: "Ann".to_owned(), surname: "A".to_owned() };
        let zed = PresenceEntry { player_id: Uuid::new_v4(), name: "Zed".to_owned(), surname: "Z".to_owned() };
        let values = vec![
            serde_json::to_string(&zed).unwrap(),
            "not json".to_owned(),
            serde_json::to_string(&ann).unwrap(),
            serde_json::to_string(&zed).unwrap(),
        ];
        assert_eq!(decode_presence(Uuid::nil(), values), vec![ann, zed]);
    }
}
