//! Attacks from outside, on both transports: each case reproduces an attack on a loopback
//! server and asserts what the server does (see docs/reliability.md, "Attacks").

#[path = "suite/mod.rs"]
mod suite;

#[allow(dead_code)]
#[path = "hostile/backends.rs"]
mod backends;

#[path = "attacks/cases.rs"]
mod attacks;

macro_rules! attack_suite {
    ($($backend:ident),*) => {
        $(
            #[allow(non_snake_case)]
            mod $backend {
                use super::{attacks, backends};
                #[test]
                fn slow_heads_do_not_keep_new_clients_out() {
                    attacks::slow_heads_do_not_keep_new_clients_out::<backends::$backend>();
                }
                #[test]
                fn text_flooders_are_closed_1008_and_others_keep_their_frames() {
                    attacks::text_flooders_are_closed_1008::<backends::$backend>();
                }
                #[test]
                fn an_unfinished_message_is_closed_1008_at_its_deadline() {
                    attacks::unfinished_message_is_closed_1008::<backends::$backend>();
                }
                #[test]
                fn a_client_reclaims_its_id_while_the_server_is_full() {
                    attacks::reclaim_id_while_full::<backends::$backend>();
                }
                #[test]
                fn a_stalled_reader_is_dropped_near_the_stall_timeout() {
                    attacks::stalled_reader_is_dropped_near_the_stall_timeout::<backends::$backend>();
                }
                #[test]
                fn racing_upgrades_never_pass_the_client_cap() {
                    attacks::racing_upgrades_never_pass_the_cap::<backends::$backend>();
                }
            }
        )*
    };
}

attack_suite!(Mio, Blocking);
