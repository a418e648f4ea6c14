//! Built-in demo agents: deterministic, no network, no model. They exist so
//! that every pattern can be tried with `curl` on a fresh machine; they are
//! registered only when no agents are configured (or `demo_agents = true`).
//!
//! | agent | does | try with |
//! |---|---|---|
//! | `demo_triage` | hands billing, invoice and refund questions to `demo_billing`, answers the rest | handoff |
//! | `demo_billing` | answers billing questions | handoff |
//! | `demo_researcher` | writes research notes | sequential, concurrent, dynamic |
//! | `demo_writer` | writes a draft from its input | sequential, group_chat, dynamic |
//! | `demo_critic` | reviews and says APPROVED | group_chat |
//! | `demo_summarizer` | condenses several answers | concurrent (`aggregator = "agent"`) |
//! | `demo_echo` | repeats its input | anything |

use orchestra_core::{AgentInput, AgentOutput, AgentRef, FnAgent, Handoff, Usage};

/// Names and descriptions of the demo agents, in registration order (the
/// first is the default start agent of a handoff run).
pub const DEMO_AGENTS: &[(&str, &str)] = &[
    (
        "demo_triage",
        "Demo agent (built in, no network): triages customer support questions; hands billing, \
         invoice, payment or refund questions to demo_billing and answers the rest itself.",
    ),
    (
        "demo_billing",
        "Demo agent (built in, no network): answers billing, invoice, payment and refund questions.",
    ),
    (
        "demo_researcher",
        "Demo agent (built in, no network): researches a topic and returns research notes with facts.",
    ),
    (
        "demo_writer",
        "Demo agent (built in, no network): writes a short article or draft from notes.",
    ),
    (
        "demo_critic",
        "Demo agent (built in, no network): reviews a draft and replies APPROVED.",
    ),
    (
        "demo_summarizer",
        "Demo agent (built in, no network): summarizes several answers into one.",
    ),
    (
        "demo_echo",
        "Demo agent (built in, no network): repeats its input unchanged.",
    ),
];

const BILLING_WORDS: &[&str] = &[
    "bill", "billing", "invoice", "refund", "payment", "charge", "charged", "price",
];

/// The demo agent with this name.
pub fn demo_agent(name: &str) -> Option<AgentRef> {
    let description = DEMO_AGENTS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, d)| *d)?;
    let agent = match name {
        "demo_triage" => FnAgent::arc(name, description, |i: AgentInput, _| async move {
            let lower = i.task.to_lowercase();
            let billing = lower
                .split(|c: char| !c.is_alphanumeric())
                .any(|w| BILLING_WORDS.contains(&w));
            if billing {
                AgentOutput::handoff(Handoff::new(
                    "demo_billing",
                    "the customer asks about billing",
                ))
            } else {
                with_usage(format!(
                    "Demo triage: '{}' is a general question; here is a general answer.",
                    clip(&i.task, 120)
                ))
            }
        }),
        "demo_billing" => FnAgent::arc(name, description, |i: AgentInput, _| async move {
            let question = i
                .messages
                .iter()
                .rev()
                .find(|m| m.role == orchestra_core::Role::User)
                .map_or(i.task.as_str(), |m| m.content.as_str());
            with_usage(format!(
                "Demo billing: about '{}': the refund was approved and will reach your account \
                 in 3-5 business days.",
                clip(question, 120)
            ))
        }),
        "demo_researcher" => FnAgent::arc(name, description, |i: AgentInput, _| async move {
            with_usage(format!(
                "Research notes on '{}': (1) background and definitions; (2) two well-established \
                 facts; (3) one open question worth a follow-up.",
                clip(&i.task, 160)
            ))
        }),
        "demo_writer" => FnAgent::arc(name, description, |i: AgentInput, _| async move {
            with_usage(format!(
                "Draft: a short article built from: {}",
                clip(&i.task, 200)
            ))
        }),
        "demo_critic" => FnAgent::arc(name, description, |_: AgentInput, _| async move {
            with_usage("APPROVED. The draft is clear and on topic.".to_owned())
        }),
        "demo_summarizer" => FnAgent::arc(name, description, |i: AgentInput, _| async move {
            // The answers to summarize are the agent messages since the last user message.
            let start = i
                .messages
                .iter()
                .rposition(|m| m.role == orchestra_core::Role::User)
                .map_or(0, |p| p + 1);
            let answers: Vec<String> = i.messages[start..]
                .iter()
                .filter(|m| m.role == orchestra_core::Role::Assistant)
                .map(|m| {
                    format!(
                        "{} said '{}'",
                        m.name.as_deref().unwrap_or("an agent"),
                        clip(&m.content, 60)
                    )
                })
                .collect();
            with_usage(if answers.is_empty() {
                format!("Summary: {}", clip(&i.task, 160))
            } else {
                format!(
                    "Summary of {} answers: {}.",
                    answers.len(),
                    answers.join("; ")
                )
            })
        }),
        "demo_echo" => FnAgent::arc(name, description, |i: AgentInput, _| async move { i.task }),
        _ => return None,
    };
    Some(agent)
}

/// Demo usage figures: one "token" per word, so usage totals are visible in results.
fn with_usage(text: String) -> AgentOutput {
    let words = text.split_whitespace().count() as u64;
    AgentOutput::text(text).with_usage(Usage::new(words, words))
}

fn clip(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use orchestra_core::AgentContext;

    #[test]
    fn every_listed_demo_agent_exists_and_says_it_is_a_demo() {
        for (name, description) in DEMO_AGENTS {
            let agent = demo_agent(name).unwrap();
            assert_eq!(agent.name(), *name);
            assert!(description.starts_with("Demo agent"), "{name}");
        }
        assert!(demo_agent("demo_nothing").is_none());
    }

    #[tokio::test]
    async fn triage_hands_refunds_to_billing_and_answers_the_rest() {
        let triage = demo_agent("demo_triage").unwrap();
        let input = |t: &str| AgentInput {
            task: t.into(),
            ..Default::default()
        };
        let out = triage
            .invoke(input("Where is my refund?"), AgentContext::detached("t"))
            .await
            .unwrap();
        assert_eq!(out.handoff.unwrap().to, "demo_billing");
        let out = triage
            .invoke(input("What are your hours?"), AgentContext::detached("t"))
            .await
            .unwrap();
        assert!(out.handoff.is_none());
    }
}
