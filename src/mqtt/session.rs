//! One connection to the broker with rumqttc, MQTT 3.1.1 or 5 behind one small interface: connect
//! (CONNACK), publish QoS 1, and the events the output needs (a publish written with its packet
//! id, a PUBACK). A session is never reused after an error: the output opens a new one and sends
//! again what was not acknowledged, from its cursor in the outbox (rumqttc's own replay of
//! unacknowledged packets is not used, so the outbox stays the only source of truth).

use std::io;
use std::time::Duration;

use super::config::{MqttConfig, Protocol};
use super::topic::Message;
use crate::delivery::Outcome;

/// What the broker or the connection did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ev {
    /// A publish was written with this packet id (in the order they were handed over).
    Sent(u16),
    /// The broker acknowledged this packet id.
    Acked(u16),
    /// The broker refused this packet id (MQTT 5 PUBACK reason code ≥ 0x80).
    Refused(u16, String),
    /// Anything else (pings, CONNACK of an open session, …).
    Other,
}

/// Why the connection failed: the class for the policy and a short reason for logs (never a
/// secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// For the policy.
    pub outcome: Outcome,
    /// Error class as the delivery log shows it (`connection_refused`, `not_authorized`, …).
    pub class: String,
}

impl Failure {
    fn new(outcome: Outcome, class: impl Into<String>) -> Self {
        Self {
            outcome,
            class: class.into(),
        }
    }
}

/// An open connection.
pub enum Session {
    /// MQTT 3.1.1.
    V4(rumqttc::AsyncClient, Box<rumqttc::EventLoop>),
    /// MQTT 5.
    V5(rumqttc::v5::AsyncClient, Box<rumqttc::v5::EventLoop>),
}

/// Requests the client may queue before the event loop takes them (a record with discovery
/// and value topics is a few dozen messages; the window holds `inflight` records).
const CHANNEL: usize = 65_536;

/// Packets rumqttc keeps in flight at most (with MQTT 5 the broker's receive maximum when
/// smaller). rumqttc allocates a slot for each up front (its MQTT 5 default would be 65535).
const INFLIGHT_PACKETS: u16 = 1024;

impl Session {
    /// Connects to the output's broker with its credentials, TLS and Last Will (`offline`,
    /// retained, on the status topic), and waits for a CONNACK within `connect_timeout`.
    pub async fn connect(
        cfg: &MqttConfig,
        client_id: &str,
        will_topic: &str,
    ) -> Result<Session, Failure> {
        let broker = cfg
            .broker()
            .map_err(|_| Failure::new(Outcome::Failed, "bad_url"))?;
        let transport = match &cfg.tls {
            Some(tls) if broker.tls => {
                rumqttc::Transport::Tls(rumqttc::TlsConfiguration::Rustls(tls.clone()))
            }
            _ => rumqttc::Transport::Tcp,
        };
        let password = cfg.password.as_ref().map(|p| p.expose().to_owned());
        let mut session = match cfg.protocol {
            Protocol::V311 => {
                let mut o = rumqttc::MqttOptions::new(client_id, &broker.host, broker.port);
                o.set_keep_alive(cfg.keep_alive)
                    .set_clean_session(true)
                    .set_transport(transport)
                    .set_max_packet_size(1 << 20, 1 << 20)
                    // Packets rumqttc keeps unacknowledged (a slot each, allocated up front);
                    // more wait in its queue, in order.
                    .set_inflight(INFLIGHT_PACKETS)
                    .set_last_will(rumqttc::LastWill::new(
                        will_topic,
                        "offline",
                        rumqttc::QoS::AtLeastOnce,
                        true,
                    ));
                if let Some(u) = &cfg.username {
                    o.set_credentials(u, password.clone().unwrap_or_default());
                }
                let (c, e) = rumqttc::AsyncClient::new(o, CHANNEL);
                Session::V4(c, Box::new(e))
            }
            Protocol::V5 => {
                use rumqttc::v5::mqttbytes::{QoS, v5::LastWill};
                let mut o = rumqttc::v5::MqttOptions::new(client_id, &broker.host, broker.port);
                o.set_keep_alive(cfg.keep_alive)
                    .set_clean_start(true)
                    .set_transport(transport)
                    .set_max_packet_size(Some(1 << 20))
                    .set_outgoing_inflight_upper_limit(INFLIGHT_PACKETS)
                    .set_last_will(LastWill::new(
                        will_topic,
                        "offline",
                        QoS::AtLeastOnce,
                        true,
                        None,
                    ));
                if let Some(u) = &cfg.username {
                    o.set_credentials(u, password.clone().unwrap_or_default());
                }
                let (c, e) = rumqttc::v5::AsyncClient::new(o, CHANNEL);
                Session::V5(c, Box::new(e))
            }
        };
        let wait = async {
            loop {
                match &mut session {
                    Session::V4(_, e) => match e.poll().await {
                        Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(_))) => return Ok(()),
                        Ok(_) => {}
                        Err(err) => return Err(classify_v4(&err)),
                    },
                    Session::V5(_, e) => match e.poll().await {
                        Ok(rumqttc::v5::Event::Incoming(rumqttc::v5::Incoming::ConnAck(_))) => {
                            return Ok(());
                        }
                        Ok(_) => {}
                        Err(err) => return Err(classify_v5(&err)),
                    },
                }
            }
        };
        match tokio::time::timeout(cfg.connect_timeout, wait).await {
            Ok(Ok(())) => Ok(session),
            Ok(Err(f)) => Err(f),
            Err(_) => Err(Failure::new(Outcome::Failed, "connect_timeout")),
        }
    }

    /// Hands one message to the client (QoS 1). It is written by [`Session::poll`].
    pub fn publish(&self, m: &Message) -> Result<(), Failure> {
        let r = match self {
            Session::V4(c, _) => c
                .try_publish(
                    m.topic.as_str(),
                    rumqttc::QoS::AtLeastOnce,
                    m.retain,
                    m.payload.clone(),
                )
                .map_err(|_| ()),
            Session::V5(c, _) => c
                .try_publish(
                    m.topic.as_str(),
                    rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
                    m.retain,
                    m.payload.clone(),
                )
                .map_err(|_| ()),
        };
        r.map_err(|_| Failure::new(Outcome::Failed, "client_queue_full"))
    }

    /// The next event of the connection; an error ends the session.
    pub async fn poll(&mut self) -> Result<Ev, Failure> {
        match self {
            Session::V4(_, e) => match e.poll().await {
                Ok(rumqttc::Event::Outgoing(rumqttc::Outgoing::Publish(pkid))) => {
                    Ok(Ev::Sent(pkid))
                }
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::PubAck(a))) => Ok(Ev::Acked(a.pkid)),
                Ok(_) => Ok(Ev::Other),
                Err(err) => Err(classify_v4(&err)),
            },
            Session::V5(_, e) => match e.poll().await {
                Ok(rumqttc::v5::Event::Outgoing(rumqttc::Outgoing::Publish(pkid))) => {
                    Ok(Ev::Sent(pkid))
                }
                Ok(rumqttc::v5::Event::Incoming(rumqttc::v5::Incoming::PubAck(a))) => {
                    use rumqttc::v5::mqttbytes::v5::PubAckReason as R;
                    match a.reason {
                        R::Success | R::NoMatchingSubscribers => Ok(Ev::Acked(a.pkid)),
                        other => Ok(Ev::Refused(
                            a.pkid,
                            format!("puback_{}", snake(&format!("{other:?}"))),
                        )),
                    }
                }
                Ok(_) => Ok(Ev::Other),
                Err(err) => Err(classify_v5(&err)),
            },
        }
    }

    /// Sends DISCONNECT (no Last Will then) and lets the event loop write it, for at most
    /// `within`.
    pub async fn disconnect(&mut self, within: Duration) {
        let _ = match self {
            Session::V4(c, _) => c.try_disconnect().map_err(|_| ()),
            Session::V5(c, _) => c.try_disconnect().map_err(|_| ()),
        };
        let drain = async {
            loop {
                let done = match self {
                    Session::V4(_, e) => match e.poll().await {
                        Ok(rumqttc::Event::Outgoing(rumqttc::Outgoing::Disconnect)) | Err(_) => {
                            true
                        }
                        Ok(_) => false,
                    },
                    Session::V5(_, e) => match e.poll().await {
                        Ok(rumqttc::v5::Event::Outgoing(rumqttc::Outgoing::Disconnect))
                        | Err(_) => true,
                        Ok(_) => false,
                    },
                };
                if done {
                    return;
                }
            }
        };
        let _ = tokio::time::timeout(within, drain).await;
    }
}

/// `NotAuthorized` → `not_authorized`.
fn snake(name: &str) -> String {
    let mut out = String::new();
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// The class of an I/O error: the gateway's own network (DNS, no route) is `Offline`.
pub fn classify_io(e: &io::Error) -> Failure {
    if let Some(tls) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
        return Failure::new(Outcome::Failed, crate::webhook::http::tls_class(tls));
    }
    let text = e.to_string();
    match e.kind() {
        io::ErrorKind::ConnectionRefused => Failure::new(Outcome::Failed, "connection_refused"),
        io::ErrorKind::NetworkUnreachable | io::ErrorKind::HostUnreachable => {
            Failure::new(Outcome::Offline, "no_route")
        }
        io::ErrorKind::NetworkDown => Failure::new(Outcome::Offline, "network_down"),
        _ if text.contains("lookup address") || text.contains("resolve") => {
            Failure::new(Outcome::Offline, "dns")
        }
        io::ErrorKind::TimedOut => Failure::new(Outcome::Failed, "timeout"),
        io::ErrorKind::ConnectionReset
        | io::ErrorKind::ConnectionAborted
        | io::ErrorKind::BrokenPipe
        | io::ErrorKind::UnexpectedEof => Failure::new(Outcome::Failed, "connection_reset"),
        _ => Failure::new(Outcome::Failed, "io"),
    }
}

fn classify_tls(e: &rumqttc::TlsError) -> Failure {
    match e {
        rumqttc::TlsError::Io(io) => classify_io(io),
        rumqttc::TlsError::TLS(t) => {
            Failure::new(Outcome::Failed, crate::webhook::http::tls_class(t))
        }
        rumqttc::TlsError::DNSName(_) => Failure::new(Outcome::Failed, "tls_wrong_name"),
        _ => Failure::new(Outcome::Failed, "tls"),
    }
}

fn classify_v4(e: &rumqttc::ConnectionError) -> Failure {
    use rumqttc::{ConnectReturnCode as C, ConnectionError as E};
    log::debug!("mqtt: connection error: {e:?}");
    match e {
        E::Io(io) => classify_io(io),
        E::Tls(t) => classify_tls(t),
        E::ConnectionRefused(code) => Failure::new(
            Outcome::Failed,
            match code {
                C::BadUserNamePassword => "bad_username_or_password",
                C::NotAuthorized => "not_authorized",
                C::BadClientId => "bad_client_id",
                C::RefusedProtocolVersion => "protocol_version_refused",
                C::ServiceUnavailable => "broker_unavailable",
                C::Success => "refused",
            },
        ),
        E::NetworkTimeout | E::FlushTimeout => Failure::new(Outcome::Failed, "timeout"),
        E::MqttState(s) => match s {
            rumqttc::StateError::Io(io) => classify_io(io),
            rumqttc::StateError::Deserialization(rumqttc::mqttbytes::Error::Io(io)) => {
                classify_io(io)
            }
            rumqttc::StateError::AwaitPingResp => Failure::new(Outcome::Failed, "ping_timeout"),
            // The broker closed the connection (its end of the stream, no DISCONNECT).
            rumqttc::StateError::ConnectionAborted => {
                Failure::new(Outcome::Failed, "connection_reset")
            }
            _ => Failure::new(Outcome::Failed, "protocol"),
        },
        _ => Failure::new(Outcome::Failed, "protocol"),
    }
}

fn classify_v5(e: &rumqttc::v5::ConnectionError) -> Failure {
    use rumqttc::v5::ConnectionError as E;
    log::debug!("mqtt: connection error: {e:?}");
    use rumqttc::v5::mqttbytes::v5::ConnectReturnCode as C;
    match e {
        E::Io(io) => classify_io(io),
        E::Tls(t) => classify_tls(t),
        E::ConnectionRefused(code) => Failure::new(
            Outcome::Failed,
            match code {
                C::BadUserNamePassword => "bad_username_or_password".to_owned(),
                C::NotAuthorized => "not_authorized".to_owned(),
                other => snake(&format!("{other:?}")),
            },
        ),
        E::Timeout(_) => Failure::new(Outcome::Failed, "timeout"),
        E::MqttState(s) => match s {
            rumqttc::v5::StateError::Io(io) => classify_io(io),
            rumqttc::v5::StateError::Deserialization(rumqttc::v5::mqttbytes::Error::Io(io)) => {
                classify_io(io)
            }
            rumqttc::v5::StateError::AwaitPingResp => Failure::new(Outcome::Failed, "ping_timeout"),
            rumqttc::v5::StateError::ConnectionAborted => {
                Failure::new(Outcome::Failed, "connection_reset")
            }
            // An MQTT 5 broker says why it ends the session (0x87 not authorized, 0x97 quota…).
            rumqttc::v5::StateError::ServerDisconnect { reason_code, .. } => Failure::new(
                Outcome::Failed,
                format!("disconnect_{}", snake(&format!("{reason_code:?}"))),
            ),
            _ => Failure::new(Outcome::Failed, "protocol"),
        },
        _ => Failure::new(Outcome::Failed, "protocol"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes() {
        assert_eq!(snake("NotAuthorized"), "not_authorized");
        let refused = io::Error::from(io::ErrorKind::ConnectionRefused);
        assert_eq!(classify_io(&refused).outcome, Outcome::Failed);
        let unreachable = io::Error::from(io::ErrorKind::NetworkUnreachable);
        assert_eq!(classify_io(&unreachable).outcome, Outcome::Offline);
        let dns = io::Error::other("failed to lookup address information");
        assert_eq!(classify_io(&dns), Failure::new(Outcome::Offline, "dns"));
        let e = rumqttc::ConnectionError::ConnectionRefused(
            rumqttc::ConnectReturnCode::BadUserNamePassword,
        );
        assert_eq!(classify_v4(&e).class, "bad_username_or_password");
        // A broker that closes the stream (mosquitto after refusing a publish, a restart).
        let closed = rumqttc::ConnectionError::MqttState(rumqttc::StateError::ConnectionAborted);
        assert_eq!(classify_v4(&closed).class, "connection_reset");
        let closed =
            rumqttc::v5::ConnectionError::MqttState(rumqttc::v5::StateError::ConnectionAborted);
        assert_eq!(classify_v5(&closed).class, "connection_reset");
        let told =
            rumqttc::v5::ConnectionError::MqttState(rumqttc::v5::StateError::ServerDisconnect {
                reason_code: rumqttc::v5::mqttbytes::v5::DisconnectReasonCode::NotAuthorized,
                reason_string: None,
            });
        assert_eq!(classify_v5(&told).class, "disconnect_not_authorized");
    }
}
