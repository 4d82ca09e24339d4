//! Profile families (RORG and FUNC) and their titles, for listings and the coverage table.

/// Every family the built-in profiles or the EEP reference know, sorted: (RORG, FUNC, title).
/// Titles are the EEP function titles.
pub static FAMILIES: &[(u8, u8, &str)] = &[
    (0xA5, 0x02, "Temperature Sensors"),
    (0xA5, 0x04, "Temperature and Humidity Sensor"),
    (0xA5, 0x05, "Barometric Sensor"),
    (0xA5, 0x06, "Light Sensor"),
    (0xA5, 0x07, "Occupancy Sensor"),
    (0xA5, 0x08, "Light, Temperature and Occupancy Sensor"),
    (0xA5, 0x09, "Gas Sensor"),
    (0xA5, 0x10, "Room Operating Panel"),
    (0xA5, 0x11, "Controller Status"),
    (0xA5, 0x12, "Automated Meter Reading (AMR)"),
    (0xA5, 0x13, "Environmental Applications"),
    (0xA5, 0x14, "Multi-Func Sensor"),
    (0xA5, 0x20, "HVAC Components"),
    (0xA5, 0x30, "Digital Input"),
    (0xA5, 0x37, "Energy Management"),
    (0xA5, 0x38, "Central Command"),
    (0xA5, 0x3F, "Universal"),
    (0xD0, 0x00, "Signal telegrams (any device)"),
    (0xD2, 0x00, "Room Control Panel (RCP)"),
    (
        0xD2,
        0x01,
        "Electronic switches and dimmers with Energy Measurement and Local Control",
    ),
    (
        0xD2,
        0x02,
        "Sensors for Temperature, Illumination, Occupancy And Smoke",
    ),
    (0xD2, 0x03, "Light, Switching + Blind Control"),
    (
        0xD2,
        0x04,
        "CO2, Humidity, Temperature, Day/Night and Autonomy",
    ),
    (0xD2, 0x05, "Blinds Control for Position and Angle"),
    (0xD2, 0x06, "Multisensor Window Handle"),
    (
        0xD2,
        0x10,
        "Room Control Panels with Temperature & Fan Speed Control, Room Status Information and Time Program",
    ),
    (0xD2, 0x11, "Bidirectional Room Operating Panel"),
    (0xD2, 0x14, "Multi Function Sensors"),
    (0xD2, 0x15, "People Activity"),
    (0xD2, 0x20, "Fan Control"),
    (
        0xD2,
        0x30,
        "Floor Heating Controls and Automated Meter Reading",
    ),
    (0xD2, 0x31, "Automated Meter Reading Gateway"),
    (0xD2, 0x32, "A.C. Current Clamp"),
    (0xD2, 0x34, "Heating Actuator"),
    (0xD2, 0x40, "LED Controller Status"),
    (0xD2, 0x50, "Heat Recovery Ventilation"),
    (0xD2, 0xA0, "Standard Valve"),
    (0xD2, 0xB0, "Liquid Leakage Sensor"),
    (0xD5, 0x00, "Contacts and Switches"),
    (0xF6, 0x01, "Switches Buttons"),
    (0xF6, 0x02, "Rocker Switch, 2 Rocker"),
    (0xF6, 0x03, "Rocker Switch, 4 Rocker"),
    (0xF6, 0x04, "Position Switch, Home and Office Application"),
    (0xF6, 0x05, "Detectors"),
    (0xF6, 0x10, "Mechanical Handle"),
    (0xF6, 0x3F, "Universal (manufacturer-specific RPS)"),
];

/// The title of a family, when it is known.
pub fn family_title(rorg: u8, func: u8) -> Option<&'static str> {
    FAMILIES
        .binary_search_by(|&(r, f, _)| (r, f).cmp(&(rorg, func)))
        .ok()
        .map(|i| FAMILIES[i].2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorted_and_found() {
        for w in FAMILIES.windows(2) {
            assert!((w[0].0, w[0].1) < (w[1].0, w[1].1));
        }
        assert_eq!(family_title(0xA5, 0x02), Some("Temperature Sensors"));
        assert_eq!(family_title(0xA5, 0x03), None);
    }
}
