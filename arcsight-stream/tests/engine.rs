//! Engine-level black-box tests (issue 21, "Exact list semantics" and "Nothing lost"): the
//! real engine against the ESM simulator's Active List, fed by a model of the live stream.
//! Each test asserts the list at a quiet moment (the platform holds a position at or past the
//! last event, so every write up to it was acknowledged).

mod common;

use arcsight_stream::engine::Clock;
use arcsight_stream::metrics::StreamMetrics;
use common::*;
use esm_simulator::Dialect;

/// One engine on a fresh simulator and stream.
struct World {
    esm: Esm,
    platform: std::sync::Arc<Platform>,
    store: Store,
    metrics: StreamMetrics,
    clock: Clock,
}

impl World {
    async fn new(dialect: Dialect) -> World {
        let clock = Clock::manual(T0);
        World {
            esm: Esm::start(dialect, sim_list(&["value"])).await,
            platform: Platform::new(clock.clone()),
            store: Store::new(None),
            metrics: StreamMetrics::default(),
            clock,
        }
    }

    fn run(&self, cfg: arcsight_stream::engine::EngineConfig) -> Running {
        spawn(
            cfg,
            self.platform.source(16),
            &self.esm,
            &self.store,
            &self.metrics,
            &self.clock,
        )
    }

    async fn settle(&self) {
        let last = self.platform.last_id().expect("an event");
        settled(&self.store, &last).await;
    }
}

#[tokio::test]
async fn the_seven_supported_types_reach_the_list_in_one_batch() {
    for dialect in [Dialect::Prefixed, Dialect::Plain] {
        let w = World::new(dialect).await;
        let patterns = [
            ("i1", "[ipv4-addr:value = '198.51.100.7']", "198.51.100.7"),
            ("i2", "[ipv6-addr:value = '2001:db8::1']", "2001:db8::1"),
            ("i3", "[domain-name:value = 'evil.example']", "evil.example"),
            (
                "i4",
                "[url:value = 'http://evil.example/x']",
                "http://evil.example/x",
            ),
            (
                "i5",
                "[file:hashes.MD5 = 'd41d8cd98f00b204e9800998ecf8427e']",
                "d41d8cd98f00b204e9800998ecf8427e",
            ),
            (
                "i6",
                "[file:hashes.'SHA-1' = 'da39a3ee5e6b4b0d3255bfef95601890afd80709']",
                "da39a3ee5e6b4b0d3255bfef95601890afd80709",
            ),
            (
                "i7",
                "[file:hashes.'SHA-256' = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855']",
                "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            ),
        ];
        for (id, p, _) in patterns {
            w.platform.push("create", create(&indicator(id, p)));
        }
        // A first run: the existing indicators come as the recovery.
        w.clock.advance(std::time::Duration::from_secs(1));
        let engine = w.run(config(None));
        w.settle().await;
        let want: Vec<&str> = patterns.iter().map(|p| p.2).collect();
        assert_eq!(w.esm.values(), set(&want), "{dialect:?}");
        assert_eq!(w.esm.calls("addEntries"), [7], "{dialect:?}: one batch");
        engine.stop().await;
    }
}
