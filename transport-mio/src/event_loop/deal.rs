//! Which loop serves a new connection: spread, then pack.
//!
//! Every loop is a thread that writes its clients' frames itself, so a loop with two busy
//! clients takes twice as long per frame as a loop with one, and the slowest loop sets the pace.
//! The first connections therefore get a loop each (a core each, up to one per loop). Beyond
//! that, more busy loops stop paying: they compete for the cores with the clients and the sender,
//! and each frame is read into more caches. So once every loop holds a connection, new ones are
//! packed onto the first `pack` loops ([`crate::PACK_LOOPS`] for [`crate::Server::bind`]).
//! A connection that closes frees its loop: while any loop is empty, the next one goes there.

/// The loop for a new connection, given each loop's live connections (`counts`, dealt ones
/// included) and how many of the first loops take connections beyond one per loop (`pack`).
///
/// While some loop has no connection, the first such loop; otherwise the least-loaded of the
/// first `pack` loops (`pack` is taken as at least 1 and at most `counts.len()`, so with
/// `pack >= counts.len()` this is simply the least-loaded loop). Ties go to the lowest index.
/// An empty `counts` gives 0.
pub(crate) fn pick_loop(counts: &[usize], pack: usize) -> usize {
    if let Some(empty) = counts.iter().position(|&c| c == 0) {
        return empty;
    }
    let pack = pack.max(1).min(counts.len());
    // `min_by_key` keeps the first of equal minima: the lowest index.
    counts[..pack]
        .iter()
        .enumerate()
        .min_by_key(|&(_, &c)| c)
        .map_or(0, |(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::pick_loop;

    /// Deals `n` connections that all stay open, from `counts`, and returns the loops chosen.
    fn deal(counts: &mut [usize], pack: usize, n: usize) -> Vec<usize> {
        (0..n)
            .map(|_| {
                let to = pick_loop(counts, pack);
                counts[to] += 1;
                to
            })
            .collect()
    }

    #[test]
    fn spreads_one_per_loop_first() {
        let mut counts = [0; 16];
        assert_eq!(deal(&mut counts, 8, 16), (0..16).collect::<Vec<_>>());
        assert_eq!(counts, [1; 16]);
    }

    #[test]
    fn then_packs_onto_the_first_loops() {
        let mut counts = [0; 16];
        deal(&mut counts, 8, 16);
        // Round-robin over the first 8: each gets a second, then a third connection.
        let next = deal(&mut counts, 8, 16);
        assert_eq!(
            next,
            [(0..8).collect::<Vec<_>>(), (0..8).collect()].concat()
        );
        assert_eq!(&counts[..8], &[3; 8]);
        assert_eq!(&counts[8..], &[1; 8]);
    }

    #[test]
    fn ties_go_to_the_lowest_index() {
        assert_eq!(pick_loop(&[0, 0, 0], 2), 0);
        assert_eq!(pick_loop(&[1, 0, 0], 2), 1);
        assert_eq!(pick_loop(&[2, 1, 1, 1], 4), 1);
        assert_eq!(pick_loop(&[2, 2, 1], 2), 0, "loop 2 is outside the pack");
        assert_eq!(pick_loop(&[3, 2, 2, 1], 3), 1);
    }

    #[test]
    fn an_uneven_pack_fills_its_least_loaded_loop() {
        // Loops of the pack emptied unevenly by closes: the lightest one in the pack first,
        // never a loop outside it while every loop has a connection.
        assert_eq!(pick_loop(&[5, 2, 4, 1, 1], 3), 1);
        assert_eq!(pick_loop(&[5, 2, 4, 1, 0], 3), 4);
    }

    #[test]
    fn with_no_more_loops_than_the_pack_it_is_least_loaded() {
        for pack in [3, 4, 8, usize::MAX] {
            let mut counts = [0; 3];
            assert_eq!(deal(&mut counts, pack, 7), [0, 1, 2, 0, 1, 2, 0]);
            assert_eq!(pick_loop(&[4, 2, 3], pack), 1);
            assert_eq!(pick_loop(&[4, 3, 2], pack), 2);
        }
        // One loop: everything goes there.
        assert_eq!(pick_loop(&[0], 8), 0);
        assert_eq!(pick_loop(&[9], 8), 0);
    }

    #[test]
    fn a_pack_of_zero_is_one_and_no_loops_is_loop_0() {
        assert_eq!(pick_loop(&[2, 1], 0), 0);
        assert_eq!(pick_loop(&[], 8), 0);
        assert_eq!(pick_loop(&[], 0), 0);
    }

    #[test]
    fn a_closed_connection_frees_its_loop_for_the_next_client() {
        let mut counts = [0; 12];
        deal(&mut counts, 8, 20);
        assert_eq!(counts, [2, 2, 2, 2, 2, 2, 2, 2, 1, 1, 1, 1]);
        // The client alone on loop 10 leaves: the next client gets loop 10 to itself.
        counts[10] -= 1;
        assert_eq!(deal(&mut counts, 8, 1), [10]);
        // A client of a packed loop leaves: that loop is the lightest of the pack again.
        counts[5] -= 1;
        assert_eq!(deal(&mut counts, 8, 2), [5, 0]);
        // Everyone leaves: spreading starts over from loop 0.
        counts = [0; 12];
        assert_eq!(deal(&mut counts, 8, 3), [0, 1, 2]);
    }
}
