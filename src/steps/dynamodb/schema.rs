//! A table's schema in a comparable form (keys, attributes, indexes with
//! their projections), and the SDK shapes built from it.

use super::*;

/// The comparable shape of a table: what must match between dev and prod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schema {
    pub attributes: BTreeMap<String, String>,
    pub keys: Vec<(String, String)>,
    /// name -> (keys, projection type, non-key attributes)
    pub gsis: BTreeMap<String, Index>,
    pub lsis: BTreeMap<String, Index>,
    pub stream: Option<String>,
    pub table_class: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Index {
    pub keys: Vec<(String, String)>,
    pub projection: String,
    pub non_key: BTreeSet<String>,
    /// Provisioned (read, write) capacity, when the table is provisioned.
    pub throughput: Option<(i64, i64)>,
}

pub(super) fn keys_of(k: &[KeySchemaElement]) -> Vec<(String, String)> {
    k.iter().map(|e| (e.attribute_name().to_owned(), e.key_type().as_str().to_owned())).collect()
}

pub(super) fn projection_of(p: Option<&Projection>) -> (String, BTreeSet<String>) {
    (
        p.and_then(|p| p.projection_type()).map_or("ALL".to_owned(), |t| t.as_str().to_owned()),
        p.map(|p| p.non_key_attributes().iter().cloned().collect()).unwrap_or_default(),
    )
}

impl Schema {
    pub fn of(t: &TableDescription) -> Schema {
        let gsis = t
            .global_secondary_indexes()
            .iter()
            .map(|g| {
                let (projection, non_key) = projection_of(g.projection());
                let throughput = g
                    .provisioned_throughput()
                    .and_then(|p| Some((p.read_capacity_units()?, p.write_capacity_units()?)))
                    .filter(|(r, w)| *r > 0 || *w > 0);
                (
                    g.index_name().unwrap_or_default().to_owned(),
                    Index { keys: keys_of(g.key_schema()), projection, non_key, throughput },
                )
            })
            .collect();
        let lsis = t
            .local_secondary_indexes()
            .iter()
            .map(|l| {
                let (projection, non_key) = projection_of(l.projection());
                (
                    l.index_name().unwrap_or_default().to_owned(),
                    Index { keys: keys_of(l.key_schema()), projection, non_key, throughput: None },
                )
            })
            .collect();
        Schema {
            attributes: t
                .attribute_definitions()
                .iter()
                .map(|a| (a.attribute_name().to_owned(), a.attribute_type().as_str().to_owned()))
                .collect(),
            keys: keys_of(t.key_schema()),
            gsis,
            lsis,
            stream: t
                .stream_specification()
                .filter(|s| s.stream_enabled())
                .map(|s| s.stream_view_type().map_or("NEW_AND_OLD_IMAGES".into(), |v| v.as_str().to_owned())),
            table_class: t
                .table_class_summary()
                .and_then(|c| c.table_class())
                .map_or("STANDARD".into(), |c| c.as_str().to_owned()),
        }
    }

    /// Differences AWS cannot apply in place (key schema, LSIs, a GSI whose
    /// keys changed), each as one line.
    pub fn incompatible(&self, prod: &Schema) -> Vec<String> {
        let mut out = Vec::new();
        if self.keys != prod.keys {
            out.push(format!("key schema: dev {:?}, prod {:?}", self.keys, prod.keys));
        }
        let same_lsis = self.lsis.len() == prod.lsis.len()
            && self.lsis.iter().all(|(n, i)| prod.lsis.get(n).is_some_and(|p| p.same_shape(i)));
        if !same_lsis {
            out.push(format!(
                "local secondary indexes: dev {:?}, prod {:?}",
                self.lsis.keys().collect::<Vec<_>>(),
                prod.lsis.keys().collect::<Vec<_>>()
            ));
        }
        for (name, want) in &self.gsis {
            if let Some(have) = prod.gsis.get(name) {
                if !have.same_shape(want) {
                    out.push(format!("global secondary index {name}: keys or projection differ"));
                }
            }
        }
        out
    }

    /// GSIs dev has and prod lacks (added in place).
    pub fn missing_gsis<'a>(&'a self, prod: &Schema) -> Vec<(&'a String, &'a Index)> {
        self.gsis.iter().filter(|(n, _)| !prod.gsis.contains_key(*n)).collect()
    }
}

impl Index {
    /// Same keys and projection (throughput aside, which can change in place).
    pub fn same_shape(&self, other: &Index) -> bool {
        (&self.keys, &self.projection, &self.non_key) == (&other.keys, &other.projection, &other.non_key)
    }
}
