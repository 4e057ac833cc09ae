//! Answers to Home Assistant's config-flow forms, built from the `data_schema` the flow sends, so
//! one code path fits every version: Home Assistant 2026.1 moved the Generic camera's transport,
//! authentication, SSL check and frame rate into a required `advanced` section, and answers the
//! flat keys of 2025 with 400 "extra keys not allowed".

use serde_json::{Map, Value};

/// The answer to a form: each field the form has, from `values` by name, else the value the
/// form suggests (an options flow suggests what the entry holds now, which keeps settings a
/// user changed in Home Assistant). Sections (`"type": "expandable"`) nest their fields.
pub fn fill(data_schema: &Value, values: &Map<String, Value>) -> Result<Value, String> {
    let fields = data_schema
        .as_array()
        .ok_or("the form has no data_schema list")?;
    let mut answer = Map::new();
    for field in fields {
        let name = field["name"]
            .as_str()
            .ok_or("a form field has no name")?
            .to_string();
        let required = field["required"] == true;
        let value = if field["type"] == "expandable" {
            let nested = fill(&field["schema"], values)?;
            (required || nested.as_object().is_some_and(|m| !m.is_empty())).then_some(nested)
        } else {
            values
                .get(&name)
                .or_else(|| suggested(field))
                .or_else(|| field.get("default"))
                .cloned()
        };
        match value {
            Some(value) => {
                answer.insert(name, value);
            }
            None if required => {
                return Err(format!(
                    "Home Assistant's form asks for \"{name}\", which ipcam-mqtt does not know"
                ));
            }
            None => {}
        }
    }
    Ok(Value::Object(answer))
}

fn suggested(field: &Value) -> Option<&Value> {
    field["description"]
        .get("suggested_value")
        .filter(|v| !v.is_null())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn values() -> Map<String, Value> {
        match json!({
            "stream_source": "rtsp://u:p@h:8554/a_live",
            "still_image_url": "http://h:1984/api/still.jpeg?src=a",
            "username": "u",
            "password": "p",
            "rtsp_transport": "tcp",
            "authentication": "basic",
            "framerate": 2,
            "verify_ssl": false,
        }) {
            Value::Object(map) => map,
            _ => unreachable!(),
        }
    }

    /// The Generic camera's first step as Home Assistant 2025.4 serialises it.
    #[test]
    fn a_flat_form_of_2025_gets_flat_fields() {
        let schema = json!([
            {"name": "still_image_url", "required": false, "type": "string"},
            {"name": "stream_source", "required": false, "type": "string"},
            {"name": "rtsp_transport", "required": false, "selector": {"select": {}}},
            {"name": "authentication", "required": false, "type": "select", "options": [["basic", "basic"], ["digest", "digest"]]},
            {"name": "username", "required": false, "type": "string"},
            {"name": "password", "required": false, "type": "string"},
            {"name": "framerate", "required": true, "type": "float"},
            {"name": "verify_ssl", "required": true, "type": "boolean", "default": true},
        ]);
        assert_eq!(fill(&schema, &values()).unwrap(), Value::Object(values()));
    }

    /// The same step as Home Assistant 2026.2 serialises it: a required `advanced` section.
    #[test]
    fn the_advanced_section_of_2026_nests_its_fields() {
        let schema = json!([
            {"name": "stream_source", "required": false, "type": "string"},
            {"name": "still_image_url", "required": false, "type": "string"},
            {"name": "username", "required": false, "type": "string"},
            {"name": "password", "required": false, "type": "string"},
            {"name": "advanced", "required": true, "type": "expandable", "expanded": false, "schema": [
                {"name": "framerate", "required": true, "type": "float"},
                {"name": "verify_ssl", "required": true, "type": "boolean"},
                {"name": "rtsp_transport", "required": false, "selector": {"select": {}}},
                {"name": "authentication", "required": false, "type": "select"},
                {"name": "limit_refetch_to_url_change", "required": false, "type": "boolean",
                 "description": {"suggested_value": true}},
            ]},
        ]);
        assert_eq!(
            fill(&schema, &values()).unwrap(),
            json!({
                "stream_source": "rtsp://u:p@h:8554/a_live",
                "still_image_url": "http://h:1984/api/still.jpeg?src=a",
                "username": "u",
                "password": "p",
                "advanced": {
                    "framerate": 2,
                    "verify_ssl": false,
                    "rtsp_transport": "tcp",
                    "authentication": "basic",
                    "limit_refetch_to_url_change": true,
                },
            })
        );
    }

    #[test]
    fn a_required_field_nobody_knows_is_named() {
        let schema = json!([{"name": "fps_cap", "required": true, "type": "integer"}]);
        let error = fill(&schema, &values()).unwrap_err();
        assert!(error.contains("\"fps_cap\""), "{error}");
        assert!(fill(&json!({"no": "list"}), &values()).is_err());
    }
}
