//! What each evaluation protocol (DESIGN §4) means for a search: which split is the database,
//! and whether a query is removed from its own ranking. The config only names the protocol;
//! its semantics live here, with evaluation.

use crate::config::Protocol;
use crate::data::cifar::SplitName;

/// The protocols' semantics, as methods on [`Protocol`].
pub trait Semantics {
    /// Whether the database is the query split itself (the test set).
    fn queries_in_db(self) -> bool;
    /// Whether a query is removed from its own ranking, from R and from `max_possible_k`.
    fn excludes_query(self) -> bool;
    /// The id to exclude from the ranking of a query whose own database id is `query_db_id`.
    fn exclusion(self, query_db_id: u32) -> Option<u32>;
    /// The split searched as the database.
    fn database(self) -> SplitName;
}

impl Semantics for Protocol {
    fn queries_in_db(self) -> bool {
        matches!(self, Protocol::Report | Protocol::LeaveOneOut)
    }

    fn excludes_query(self) -> bool {
        matches!(self, Protocol::LeaveOneOut)
    }

    fn exclusion(self, query_db_id: u32) -> Option<u32> {
        self.excludes_query().then_some(query_db_id)
    }

    fn database(self) -> SplitName {
        if self.queries_in_db() {
            SplitName::Test
        } else {
            SplitName::Train
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_protocol_as_design_section_4_defines_it() {
        // report: the query stays in the test database; leave_one_out: removed from its own
        // ranking; train_db: the 50,000 train images are the database.
        assert_eq!(Protocol::Report.exclusion(7), None);
        assert_eq!(Protocol::LeaveOneOut.exclusion(7), Some(7));
        assert_eq!(Protocol::TrainDb.exclusion(7), None);
        let dbs = Protocol::ALL.map(Semantics::database);
        assert_eq!(dbs, [SplitName::Test, SplitName::Test, SplitName::Train]);
    }
}
