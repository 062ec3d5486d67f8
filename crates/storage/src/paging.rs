//! Paging by day buckets: both engines keep a running count of each view's tasks per instance and
//! per UTC day of `created_at` (`task_buckets`, `task_totals`), and find where a page starts from
//! those counts instead of reading the rows before it. This module holds the plan twice, held to
//! one answer by the storage contract test against a full scan: [`PageCount`], the walk SQLite
//! runs in process (its statements cost no round trip, and SQLite materialises every CTE of
//! [`list_sql`]: 2–3 ms a page instead of ~60 µs), and [`list_sql`], the same plan as one
//! statement, which PostgreSQL runs so that a list costs one round trip.

use super::{TaskQuery, View};

/// The width of a count bucket: one UTC day of `created_at`.
pub const BUCKET_MS: i64 = 86_400_000;

pub fn bucket_of(ms: i64) -> i64 {
    ms.div_euclid(BUCKET_MS)
}

/// A view's number in the bucket table (the store's own numbering, so not the domain's).
pub trait ViewCode {
    fn code(self) -> i64;
}

impl ViewCode for View {
    fn code(self) -> i64 {
        match self {
            View::Background => 0,
            View::Scheduled => 1,
        }
    }
}

/// The buckets a query touches, inclusive (`bucket_of` of its bounds).
pub fn bucket_range(q: &TaskQuery) -> (i64, i64) {
    (q.created_from.map_or(i64::MIN, bucket_of), q.created_to.map_or(i64::MAX, bucket_of))
}

/// Whether a query has no time bounds, so that its total is the instance's running count.
pub fn unbounded(q: &TaskQuery) -> bool {
    q.created_from.is_none() && q.created_to.is_none()
}

/// Buckets only partly inside the query's time bounds, as `(bucket, from, to)`: their rows in
/// bounds must be counted exactly (at most a day's worth each).
pub fn partial_edges(q: &TaskQuery) -> Vec<(i64, i64, i64)> {
    let mut out: Vec<(i64, i64, i64)> = Vec::with_capacity(2);
    let span = |b: i64| (b.saturating_mul(BUCKET_MS), b.saturating_add(1).saturating_mul(BUCKET_MS) - 1);
    if let Some(f) = q.created_from {
        let b = bucket_of(f);
        let (start, end) = span(b);
        let hi = q.created_to.map_or(end, |t| t.min(end));
        if f != start || hi != end {
            out.push((b, f, hi));
        }
    }
    if let Some(t) = q.created_to {
        let b = bucket_of(t);
        let (start, end) = span(b);
        let lo = q.created_from.map_or(start, |f| f.max(start));
        if (t != end || lo != start) && !out.iter().any(|e| e.0 == b) {
            out.push((b, lo, t));
        }
    }
    out
}

/// Where a page starts, found from bucket counts without reading the rows before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PagePlan {
    pub total: u64,
    /// The newest `created_at` the page can hold and how many rows at or below it to skip;
    /// `None` when the page lies past the end.
    pub start: Option<(i64, u64)>,
}

/// `buckets` are `(bucket, count)`, newest first, the counts exact within the query's bounds.
pub fn plan_page(buckets: &[(i64, i64)], q: &TaskQuery) -> PagePlan {
    if matches!((q.created_from, q.created_to), (Some(f), Some(t)) if f > t) {
        return PagePlan { total: 0, start: None };
    }
    let total: u64 = buckets.iter().map(|b| b.1.max(0) as u64).sum();
    let mut before: u64 = 0;
    for &(bucket, n) in buckets {
        let n = n.max(0) as u64;
        if before + n > q.offset {
            let upper = bucket.saturating_add(1).saturating_mul(BUCKET_MS) - 1;
            let upper = q.created_to.map_or(upper, |t| t.min(upper));
            return PagePlan { total, start: Some((upper, q.offset - before)) };
        }
        before += n;
    }
    PagePlan { total, start: None }
}

/// The count side of a list, as every engine runs it: start from the stored total in range,
/// correct it by the exact counts of the partly covered edge buckets ([`partial_edges`]), then
/// take stored buckets newest first until the page's offset is reached.
#[derive(Debug)]
pub struct PageCount<'q> {
    q: &'q TaskQuery,
    total: i64,
    exact: Vec<(i64, i64)>,
    buckets: Vec<(i64, i64)>,
    seen: u64,
}

impl<'q> PageCount<'q> {
    /// `stored_total`: the running count when [`unbounded`], else the sum of the buckets in
    /// [`bucket_range`].
    pub fn new(q: &'q TaskQuery, stored_total: i64) -> Self {
        PageCount { q, total: stored_total, exact: Vec::with_capacity(2), buckets: Vec::new(), seen: 0 }
    }

    /// An edge bucket's rows in bounds counted exactly (`exact`), and its stored count.
    pub fn edge(&mut self, bucket: i64, exact: i64, stored: i64) {
        self.total += exact - stored;
        self.exact.push((bucket, exact));
    }

    /// The next stored bucket, newest first. `false` once the buckets read reach past the
    /// page's offset: read no further.
    pub fn bucket(&mut self, bucket: i64, stored: i64) -> bool {
        let n = self.exact.iter().find(|e| e.0 == bucket).map_or(stored, |e| e.1);
        self.buckets.push((bucket, n));
        self.seen += n.max(0) as u64;
        self.seen <= self.q.offset
    }

    /// How many buckets were taken so far.
    pub fn read(&self) -> usize {
        self.buckets.len()
    }

    /// The total in range and where the page starts (`None` past the end).
    pub fn plan(&self) -> (u64, Option<(i64, u64)>) {
        (self.total.max(0) as u64, plan_page(&self.buckets, self.q).start)
    }
}

/// The shape of a list query, which picks its statement: whether the total is the stored running
/// count ([`unbounded`]) and how many edge buckets need an exact count ([`partial_edges`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListShape {
    pub view: View,
    pub unbounded: bool,
    pub edges: usize,
}

impl ListShape {
    /// Every shape a query can have: unbounded ones have no edges, bounded ones up to two.
    pub fn all() -> impl Iterator<Item = ListShape> {
        [View::Background, View::Scheduled].into_iter().flat_map(|view| {
            std::iter::once(ListShape { view, unbounded: true, edges: 0 }).chain((0..=2).map(move |edges| ListShape {
                view,
                unbounded: false,
                edges,
            }))
        })
    }

    pub fn of(q: &TaskQuery, edges: usize) -> Self {
        ListShape { view: q.view, unbounded: unbounded(q), edges }
    }
}

/// A whole list (the instance check, the total, where the page starts and the page) as one
/// PostgreSQL statement: the plan of [`PageCount`] in SQL, so that a list costs one
/// round trip on a networked engine.
///
/// Parameters, in order: 1 instance id, 2 view code, 3 and 4 the [`bucket_range`], 5 project
/// id, 6 `created_from` (or `i64::MIN`), 7 `created_to` (or NULL), 8 offset, 9 limit, then
/// `(bucket, from, to)` of each edge of [`partial_edges`]. `columns` are the page's task
/// columns, `filter` the view's row condition. Each row holds the task columns (NULL when the
/// page is empty), then whether the instance exists in the project, then the total.
pub fn list_sql(shape: ListShape, columns: &str, filter: &str) -> String {
    let p = |n: usize| format!("${n}");
    let mut sql = String::from("WITH ");
    if shape.edges > 0 {
        let edges: Vec<String> = (0..shape.edges)
            .map(|e| {
                let (b, lo, hi) = (p(10 + 3 * e), p(11 + 3 * e), p(12 + 3 * e));
                format!(
                    "SELECT CAST({b} AS BIGINT) AS b, (SELECT count(*) FROM tasks WHERE instance_id = {i} AND {filter} \
                     AND created_at BETWEEN {lo} AND {hi}) AS n",
                    i = p(1)
                )
            })
            .collect();
        sql += &format!("edge AS ({}), ", edges.join(" UNION ALL "));
    }
    let stored = if shape.edges > 0 { "coalesce(e.n, k.n)" } else { "k.n" };
    let join = if shape.edges > 0 { " LEFT JOIN edge e ON e.b = k.bucket" } else { "" };
    // A day's count may be split over several rows (PostgreSQL's counter shards): summed first,
    // newest first, so that the bucket index is walked backwards and only as far as the offset.
    sql += &format!(
        "k AS (SELECT bucket, sum(n) AS n FROM task_buckets \
         WHERE instance_id = {i} AND view = {v} AND bucket BETWEEN {first} AND {last} GROUP BY bucket \
         ORDER BY bucket DESC), \
         b AS (SELECT k.bucket AS bucket, greatest({stored}, 0) AS n FROM k{join}), \
         c AS (SELECT bucket, n, CAST(sum(n) OVER (ORDER BY bucket DESC ROWS UNBOUNDED PRECEDING) AS BIGINT) AS upto FROM b), \
         start AS (SELECT bucket, upto - n AS before, (bucket + 1) * {day} - 1 AS upper FROM c WHERE upto > {offset} \
         ORDER BY bucket DESC LIMIT 1), \
         page AS (SELECT {columns} FROM tasks WHERE instance_id = {i} AND {filter} \
         AND created_at BETWEEN {from} AND (SELECT least(upper, coalesce({to}, upper)) FROM start) \
         ORDER BY created_at DESC, id DESC LIMIT {limit} OFFSET coalesce((SELECT {offset} - before FROM start), 0)) ",
        i = p(1),
        v = p(2),
        first = p(3),
        last = p(4),
        from = p(6),
        to = p(7),
        offset = p(8),
        limit = p(9),
        day = BUCKET_MS,
    );
    let total = if shape.unbounded {
        format!("(SELECT coalesce(sum(n), 0) FROM task_totals WHERE instance_id = {} AND view = {})", p(1), p(2))
    } else {
        "(SELECT coalesce(sum(n), 0) FROM b)".to_owned()
    };
    sql += &format!(
        "SELECT page.*, EXISTS (SELECT 1 FROM instances WHERE id = {i} AND project_id = {project}), \
         CAST({total} AS BIGINT) FROM (SELECT 1 AS one) o LEFT JOIN page ON TRUE \
         ORDER BY page.created_at DESC, page.id DESC",
        i = p(1),
        project = p(5),
    );
    sql
}

/// What removing `records` takes from the counts, one entry per (view, day bucket), so that a
/// batch delete updates each counter row once.
pub fn removal_deltas(records: &[kafka_tasks_domain::TaskRecord]) -> Vec<(View, i64, i64)> {
    // Ordered by (view, bucket), the order concurrent batches lock the counter rows in.
    let mut deltas = std::collections::BTreeMap::<(i64, i64), (View, i64)>::new();
    for r in records {
        for view in kafka_tasks_domain::placement::views_of(r) {
            deltas.entry((view.code(), bucket_of(r.created_at))).or_insert((view, 0)).1 -= 1;
        }
    }
    deltas.into_iter().map(|((_, bucket), (view, n))| (view, bucket, n)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(offset: u64, from: Option<i64>, to: Option<i64>) -> TaskQuery {
        TaskQuery {
            project_id: "0123456789abcdef0123456789abcdef".parse().expect("p"),
            instance_id: "11111111-2222-3333-4444-555555555555".parse().expect("i"),
            view: View::Background,
            created_from: from,
            created_to: to,
            offset,
            limit: 10,
        }
    }

    const D: i64 = BUCKET_MS;

    #[test]
    fn a_page_starts_in_the_bucket_that_holds_its_offset() {
        let buckets = [(12, 5), (11, 0), (10, 7)];
        assert_eq!(plan_page(&buckets, &query(0, None, None)), PagePlan { total: 12, start: Some((13 * D - 1, 0)) });
        assert_eq!(plan_page(&buckets, &query(4, None, None)).start, Some((13 * D - 1, 4)));
        assert_eq!(plan_page(&buckets, &query(5, None, None)).start, Some((11 * D - 1, 0)));
        assert_eq!(plan_page(&buckets, &query(11, None, None)).start, Some((11 * D - 1, 6)));
        assert_eq!(plan_page(&buckets, &query(12, None, None)), PagePlan { total: 12, start: None });
        assert_eq!(plan_page(&buckets, &query(0, Some(12 * D + 5), None)).start.map(|s| s.0), Some(13 * D - 1));
        assert_eq!(plan_page(&buckets, &query(0, None, Some(12 * D + 5))).start, Some((12 * D + 5, 0)));
        assert_eq!(plan_page(&buckets, &query(0, Some(3), Some(2))).total, 0);
    }

    #[test]
    fn only_partly_covered_buckets_are_counted_exactly() {
        assert!(partial_edges(&query(0, None, None)).is_empty());
        assert!(partial_edges(&query(0, Some(10 * D), Some(13 * D - 1))).is_empty());
        assert_eq!(partial_edges(&query(0, Some(10 * D + 1), Some(13 * D - 1))), [(10, 10 * D + 1, 11 * D - 1)]);
        assert_eq!(
            partial_edges(&query(0, Some(10 * D + 1), Some(12 * D))),
            [(10, 10 * D + 1, 11 * D - 1), (12, 12 * D, 12 * D)]
        );
        assert_eq!(partial_edges(&query(0, Some(10 * D + 1), Some(10 * D + 9))), [(10, 10 * D + 1, 10 * D + 9)]);
        assert_eq!(partial_edges(&query(0, None, Some(10 * D + 9))), [(10, 10 * D, 10 * D + 9)]);
        assert_eq!(bucket_range(&query(0, Some(10 * D + 1), None)), (10, i64::MAX));
    }

    #[test]
    fn the_count_takes_exact_edges_and_stops_past_the_offset() {
        let q = query(6, Some(10 * D + 1), None);
        let mut c = PageCount::new(&q, 20);
        // The edge bucket 10 stores 8 rows, of which 3 are in bounds.
        c.edge(10, 3, 8);
        assert!(c.bucket(12, 5), "5 rows do not reach offset 6");
        assert!(!c.bucket(10, 8), "the edge's exact 3 do");
        assert_eq!(c.read(), 2);
        assert_eq!(c.plan(), (15, Some((11 * D - 1, 1))));
    }

    /// PostgreSQL must infer every parameter's type, so a statement uses each of its own
    /// parameters and no other; every query's shape has a statement.
    #[test]
    fn every_list_shape_has_a_statement_using_exactly_its_parameters() {
        for shape in ListShape::all() {
            let sql = list_sql(shape, "id, created_at", "TRUE");
            let mut used: Vec<usize> = sql
                .split('$')
                .skip(1)
                .filter_map(|s| s.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok())
                .collect();
            used.sort_unstable();
            used.dedup();
            assert_eq!(used, (1..=9 + 3 * shape.edges).collect::<Vec<_>>(), "{shape:?}");
        }
        for (from, to) in [(None, None), (Some(10 * D + 1), None), (Some(10 * D + 1), Some(12 * D)), (Some(3), Some(2))]
        {
            let q = query(0, from, to);
            let shape = ListShape::of(&q, partial_edges(&q).len());
            assert!(ListShape::all().any(|s| s == shape), "{shape:?}");
        }
    }

    #[test]
    fn a_view_has_a_fixed_number_in_the_bucket_table() {
        assert_eq!((View::Background.code(), View::Scheduled.code()), (0, 1));
    }
}
