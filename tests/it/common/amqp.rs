//! A throwaway topology on the real RabbitMQ (127.0.0.1:5672, guest/guest).

use arcsight_incidents::opencti::MqConnection;
use lapin::options::{
    BasicGetOptions, ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions,
    QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::{Channel, Connection, ConnectionProperties, ExchangeKind};
use serde_json::{Value, json};

pub const BROKER: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// What a test that needs the broker says when none listens: these tests never pass silently.
pub const NO_BROKER: &str = "these tests need RabbitMQ on 127.0.0.1:5672 (guest/guest); start \
     one with `rabbitmq-server -detached` (Debian package rabbitmq-server) or \
     `docker run -d -p 5672:5672 rabbitmq:3`, or run `bash .ci/run`, which starts it";

/// A unique exchange bound to a unique queue with a unique routing key, torn down on `drop_all`.
pub struct Topology {
    pub conn: Connection,
    pub ch: Channel,
    pub exchange: String,
    pub queue: String,
    pub routing: String,
}

/// The local broker, pushing to `exchange` with `routing`.
pub fn mq(exchange: &str, routing: &str) -> MqConnection {
    MqConnection {
        host: "127.0.0.1".into(),
        port: 5672,
        vhost: "/".into(),
        use_ssl: false,
        user: "guest".into(),
        pass: "guest".into(),
        push_exchange: exchange.into(),
        push_routing: routing.into(),
    }
}

impl Topology {
    /// What `registerConnector` answers to push into this topology: the broker on 127.0.0.1
    /// at `port`, and the exchange and routing key.
    pub fn registration_config(&self, port: u16) -> Value {
        json!({
            "connection": {"host": "127.0.0.1", "port": port, "vhost": "/", "use_ssl": false,
                           "user": "guest", "pass": "guest"},
            "listen": "listen", "listen_routing": "listen_routing", "listen_exchange": "amq.direct",
            "push": self.queue, "push_routing": self.routing, "push_exchange": self.exchange,
        })
    }

    pub async fn new() -> Topology {
        Topology::with_queue_args(FieldTable::default()).await
    }

    /// A queue that holds at most `n` messages and makes the broker refuse (nack) the rest.
    pub async fn refusing_after(n: i64) -> Topology {
        let mut args = FieldTable::default();
        args.insert(
            "x-max-length".into(),
            lapin::types::AMQPValue::LongLongInt(n),
        );
        args.insert(
            "x-overflow".into(),
            lapin::types::AMQPValue::LongString("reject-publish".into()),
        );
        Topology::with_queue_args(args).await
    }

    pub async fn with_queue_args(queue_args: FieldTable) -> Topology {
        let suffix = uuid::Uuid::new_v4().simple().to_string();
        let conn = Connection::connect(BROKER, ConnectionProperties::default())
            .await
            .unwrap_or_else(|e| panic!("{NO_BROKER} ({e})"));
        let ch = conn.create_channel().await.unwrap();
        let t = Topology {
            exchange: format!("test.worker.exchange.{suffix}"),
            queue: format!("push_{suffix}"),
            routing: format!("push_routing_{suffix}"),
            conn,
            ch,
        };
        t.ch.exchange_declare(
            t.exchange.as_str().into(),
            ExchangeKind::Direct,
            ExchangeDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
        t.ch.queue_declare(
            t.queue.as_str().into(),
            QueueDeclareOptions::default(),
            queue_args,
        )
        .await
        .unwrap();
        t.ch.queue_bind(
            t.queue.as_str().into(),
            t.exchange.as_str().into(),
            t.routing.as_str().into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
        t
    }

    /// Every message in the queue, in queue order, with its properties.
    pub async fn drain(&self) -> Vec<(Value, lapin::BasicProperties)> {
        let mut out = Vec::new();
        while let Some(m) = self
            .ch
            .basic_get(self.queue.as_str().into(), BasicGetOptions { no_ack: true })
            .await
            .unwrap()
        {
            let body: Value =
                serde_json::from_slice(&m.delivery.data).expect("message body is JSON");
            out.push((body, m.delivery.properties.clone()));
        }
        out
    }

    pub async fn drop_all(self) {
        self.ch
            .queue_delete(self.queue.as_str().into(), QueueDeleteOptions::default())
            .await
            .unwrap();
        self.ch
            .exchange_delete(
                self.exchange.as_str().into(),
                ExchangeDeleteOptions::default(),
            )
            .await
            .unwrap();
        self.conn.close(200, "bye".into()).await.unwrap();
    }
}
