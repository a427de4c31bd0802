//! The sending engine's settings.
//!
//! | Variable | Meaning | Default |
//! |---|---|---|
//! | `MAIL_API_BASE` | a Mailgun-compatible API, e.g. `https://api.mailgun.net/v3/mg.example.com` (campaign mail then goes there) | unset: the `sent_mail` table |
//! | `MAIL_API_KEY` | its key (basic auth `api:KEY`) | — |
//! | `SENDING_TICK_MS` | how often this process's sending tick (an apalis-cron schedule, see [`super::periodic`]) looks for due messages, rounded up to whole seconds (0: this process sends nothing) | 5000 |
//! | `SENDING_LEASE_SECS` | how long a claimed message may stay `sending` before it is `unknown` | 120 |

use std::time::Duration;

use super::provider::MailgunConfig;

/// See the module docs.
#[derive(Debug, Clone)]
pub struct SendingConfig {
    /// The sending tick's period (rounded up to whole seconds by its
    /// schedule); `None` runs no sending in this process.
    pub tick: Option<Duration>,
    /// A claimed row's lease: longer than a provider call can take (the mail
    /// client gives up after 25 s).
    pub lease: Duration,
    /// Campaigns looked at per tick at most.
    pub batch: i64,
    /// The Mailgun-compatible provider, when configured.
    pub mailgun: Option<MailgunConfig>,
}

impl Default for SendingConfig {
    fn default() -> Self {
        Self {
            tick: Some(Duration::from_secs(5)),
            lease: Duration::from_secs(120),
            batch: 200,
            mailgun: None,
        }
    }
}

impl SendingConfig {
    /// From the variables' values.
    pub fn from_values(
        tick_ms: u64,
        lease_secs: u64,
        api_base: Option<String>,
        api_key: Option<String>,
    ) -> Result<Self, String> {
        let mailgun = match (
            api_base.filter(|b| !b.is_empty()),
            api_key.filter(|k| !k.is_empty()),
        ) {
            (Some(base), Some(key)) => Some(MailgunConfig { base, key }),
            (None, None) => None,
            _ => return Err("MAIL_API_BASE and MAIL_API_KEY must be set together".into()),
        };
        if lease_secs < 30 {
            return Err(
                "SENDING_LEASE_SECS must be at least 30 (a provider call may take 25 s)".into(),
            );
        }
        Ok(Self {
            tick: (tick_ms > 0).then(|| Duration::from_millis(tick_ms)),
            lease: Duration::from_secs(lease_secs),
            batch: 200,
            mailgun,
        })
    }
}
