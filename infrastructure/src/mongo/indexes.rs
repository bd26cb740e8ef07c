//! The indexes the store relies on. They are created at start-up with explicit names, so that
//! creating them again is a no-op and a duplicate-key message names which one was hit.
//! Snapshots need none: they are keyed by `_id`.

use super::documents::{CLAIMS, EVENTS};
use mongodb::bson::doc;
use mongodb::options::IndexOptions;
use mongodb::IndexModel;

/// Unique `{streamId: 1, version: 1}` on `events`: one event per version of a stream, and
/// the index that loads in version order walk.
pub const EVENT_VERSION_INDEX: &str = "stream_version_unique";
/// Unique `{scope: 1, value: 1}` on `claims`: one holder per unique value.
pub const CLAIM_INDEX: &str = "scope_value_unique";

fn unique(name: &str) -> IndexOptions {
    let mut options = IndexOptions::default();
    options.name = Some(name.to_owned());
    options.unique = Some(true);
    options
}

/// The indexes of each collection, as `(collection, indexes)`.
pub fn specifications() -> Vec<(&'static str, Vec<IndexModel>)> {
    let mut events = IndexModel::default();
    events.keys = doc! { "streamId": 1, "version": 1 };
    events.options = Some(unique(EVENT_VERSION_INDEX));
    let mut claims = IndexModel::default();
    claims.keys = doc! { "scope": 1, "value": 1 };
    claims.options = Some(unique(CLAIM_INDEX));
    vec![(EVENTS, vec![events]), (CLAIMS, vec![claims])]
}

#[cfg(test)]
mod tests {
    use super::*;
    use mongodb::bson::Document;

    fn index(collection: &str) -> (Document, IndexOptions) {
        let (_, mut indexes) = specifications().into_iter().find(|(name, _)| *name == collection).unwrap();
        assert_eq!(indexes.len(), 1);
        let model = indexes.remove(0);
        (model.keys, model.options.unwrap())
    }

    #[test]
    fn events_are_unique_per_stream_and_version_in_ascending_order() {
        let (keys, options) = index(EVENTS);
        assert_eq!(keys, doc! { "streamId": 1, "version": 1 });
        assert_eq!(keys.keys().collect::<Vec<_>>(), ["streamId", "version"]);
        assert_eq!(options.unique, Some(true));
        assert_eq!(options.name.as_deref(), Some(EVENT_VERSION_INDEX));
    }

    #[test]
    fn claims_are_unique_per_scope_and_value() {
        let (keys, options) = index(CLAIMS);
        assert_eq!(keys, doc! { "scope": 1, "value": 1 });
        assert_eq!(options.unique, Some(true));
        assert_eq!(options.name.as_deref(), Some(CLAIM_INDEX));
    }

    #[test]
    fn only_events_and_claims_need_indexes_and_no_index_expires_or_is_sparse() {
        let specs = specifications();
        assert_eq!(specs.iter().map(|(c, _)| *c).collect::<Vec<_>>(), [EVENTS, CLAIMS]);
        for (_, indexes) in specs {
            for model in indexes {
                let options = model.options.unwrap();
                assert!(
                    options.expire_after.is_none()
                        && options.sparse.is_none()
                        && options.partial_filter_expression.is_none()
                );
            }
        }
    }
}
