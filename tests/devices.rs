use crate::util::*;

#[test]
fn devices_explains_what_is_missing_and_what_else_works() {
    let dir = tempfile::tempdir().unwrap();
    let o = bin()
        .current_dir(dir.path())
        .env("WATTBENCH_POWERCAP_ROOT", dir.path().join("none"))
        .arg("devices")
        .output()
        .unwrap();
    assert!(o.status.success());
    let out = stdout(&o);
    assert!(out.contains("fake: available"), "{out}");
    assert!(out.contains("replay: available"), "{out}");
    let nvml = out.lines().find(|l| l.starts_with("nvml:")).unwrap();
    if nvml.contains("unavailable") {
        assert!(
            nvml.contains("libnvidia-ml.so.1") || nvml.contains("no NVIDIA GPU"),
            "{nvml}"
        );
        assert!(out.contains("No real energy sensor works here"), "{out}");
    }
    assert!(
        out.contains("rapl: unavailable") && out.contains("none"),
        "{out}"
    );
}

#[test]
fn devices_json_lists_rapl_zones_of_a_powercap_tree() {
    let dir = tempfile::tempdir().unwrap();
    let root = fake_powercap(dir.path());
    let o = bin()
        .env("WATTBENCH_POWERCAP_ROOT", &root)
        .args(["devices", "--json"])
        .output()
        .unwrap();
    assert!(o.status.success());
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let rapl = v["sensors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["sensor"] == "rapl")
        .unwrap();
    assert_eq!(rapl["available"], true);
    let ids: Vec<&str> = rapl["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["rapl:package-0", "rapl:package-0:dram"]);
    assert_eq!(rapl["devices"][0]["capabilities"]["energy_counter"], true);
    assert_eq!(rapl["devices"][0]["capabilities"]["instant_power"], false);
    let nvml = v["sensors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["sensor"] == "nvml")
        .unwrap();
    if nvml["available"] == false {
        assert!(!nvml["reason"].as_str().unwrap().is_empty());
    }
}
