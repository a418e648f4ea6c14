//! Checking a JSON value against a JSON schema, for the places that take
//! schemas from users: answers to input requests and handoff payloads.

use serde_json::Value;

/// Why `value` fails `schema` (at most five problems, each with the path
/// inside `value` when there is one); empty when it passes. `Err` when the
/// schema itself is not a valid JSON schema.
pub(crate) fn problems(schema: &Value, value: &Value) -> Result<Vec<String>, String> {
    let validator = jsonschema::validator_for(schema).map_err(|e| e.to_string())?;
    Ok(validator
        .iter_errors(value)
        .take(5)
        .map(|e| {
            let at = e.instance_path().to_string();
            if at.is_empty() {
                e.to_string()
            } else {
                format!("{at}: {e}")
            }
        })
        .collect())
}
