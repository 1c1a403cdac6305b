//! Email through SES v2 (`SendEmail`, simple text content).

use aws_sdk_sesv2::types::{Body, Content, Destination, EmailContent, Message};
use aws_smithy_types::error::display::DisplayErrorContext;

use crate::deliver::SendError;

/// An SES v2 client with the runtime's metrics interceptor, from the
/// process's shared `SdkConfig`.
pub fn ses_client(sdk: &aws_config::SdkConfig) -> aws_sdk_sesv2::Client {
    let conf = aws_sdk_sesv2::config::Builder::from(sdk)
        .retry_partition(kopter_runtime::aws::retry_partition("sesv2"))
        .interceptor(kopter_runtime::aws::AwsMetrics)
        .build();
    aws_sdk_sesv2::Client::from_conf(conf)
}

#[derive(Clone, Debug)]
pub struct Mailer {
    ses: aws_sdk_sesv2::Client,
    from: Option<String>,
}

impl Mailer {
    pub fn new(ses: aws_sdk_sesv2::Client, from: Option<String>) -> Self {
        Self { ses, from }
    }

    /// One send attempt. Rejections (unverified sender, bad address,
    /// suspended account) are permanent; throttling and AWS errors retry.
    pub async fn send(&self, to: &[String], subject: &str, text: &str) -> Result<(), SendError> {
        let Some(from) = &self.from else {
            return Err(SendError::permanent(
                "notifier.email_from is not configured".to_owned(),
            ));
        };
        let content = |s: &str| {
            Content::builder()
                .data(s)
                .charset("UTF-8")
                .build()
                .expect("data is set")
        };
        let result = self
            .ses
            .send_email()
            .from_email_address(from)
            .destination(
                Destination::builder()
                    .set_to_addresses(Some(to.to_vec()))
                    .build(),
            )
            .content(
                EmailContent::builder()
                    .simple(
                        Message::builder()
                            .subject(content(subject))
                            .body(Body::builder().text(content(text)).build())
                            .build(),
                    )
                    .build(),
            )
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(err) => {
                let reason = format!("SES SendEmail: {}", DisplayErrorContext(&err));
                let permanent = err.as_service_error().is_some_and(|e| {
                    e.is_message_rejected()
                        || e.is_bad_request_exception()
                        || e.is_mail_from_domain_not_verified_exception()
                        || e.is_account_suspended_exception()
                        || e.is_sending_paused_exception()
                        || e.is_not_found_exception()
                });
                Err(if permanent {
                    SendError::permanent(reason)
                } else {
                    SendError::retry(reason)
                })
            }
        }
    }
}
