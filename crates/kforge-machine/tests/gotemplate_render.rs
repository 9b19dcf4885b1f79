//! Rendering talhelper-style templates: label/annotation values and `@file` patches against a
//! node's v1alpha1 document, plus the engine's syntax, functions and errors.

use kforge_machine::gotemplate::{Data, Escape, Template, TemplateError, is_template, render};
use kforge_machine::patch::{Patch, apply_patches};
use serde_json::{Value, json};

fn doc(yaml: &str) -> Value {
    kforge_yaml::parse(yaml)
        .expect("test YAML parses")
        .to_value()
}

fn worker() -> Value {
    doc(r#"
version: v1alpha1
machine:
  type: worker
  token: abc.def
  certSANs: [10.0.0.1, node1.example.com]
  install:
    disk: /dev/sda
    image: factory.talos.dev/metal-installer-secureboot/376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba:v1.12.0
  network:
    hostname: hostname1
    interfaces:
      - interface: eth0
        dhcp: false
  nodeLabels:
    topology.kubernetes.io/zone: a
  files:
    - content: x
      permissions: 0o644
      path: /var/x
      op: create
cluster:
  clusterName: demo
  controlPlane:
    endpoint: https://10.0.0.10:6443
  network:
    dnsDomain: cluster.local
    serviceSubnets: [10.96.0.0/12]
  adminKubeconfig:
    certLifetime: 8760h
"#)
}

fn ok(template: &str, data: &Value) -> String {
    render(template, data).unwrap_or_else(|e| panic!("{template}: {e}"))
}

fn err(template: &str, data: &Value) -> TemplateError {
    match render(template, data) {
        Ok(out) => panic!("{template}: expected an error, got {out:?}"),
        Err(e) => e,
    }
}

// talhelper docs: nodeLabels templated on the installer image.
#[test]
fn secureboot_label_from_the_installer_image() {
    let t = r#"{{ .MachineConfig.MachineInstall.InstallImage | contains "installer-secureboot" }}"#;
    assert_eq!(ok(t, &worker()), "true");
    let mut plain = worker();
    plain["machine"]["install"]["image"] = json!("ghcr.io/siderolabs/installer:v1.12.0");
    assert_eq!(ok(t, &plain), "false");
    assert_eq!(
        ok("{{ .MachineConfig.MachineInstall.InstallImage }}", &plain),
        "ghcr.io/siderolabs/installer:v1.12.0"
    );
}

// The talhelper example's `isSecureBootEnabled: >-` label: a folded scalar keeps the line
// breaks around its more-indented lines, so the action spans several lines.
#[test]
fn multi_line_action_from_the_talhelper_example() {
    let conf = doc(
        "nodeLabels:\n  isSecureBootEnabled: >-\n    {{\n      .MachineConfig.MachineInstall.InstallImage |\n      contains \"installer-secureboot\"\n    }}\n",
    );
    let template = conf["nodeLabels"]["isSecureBootEnabled"]
        .as_str()
        .expect("a string");
    assert!(template.contains('\n'), "{template:?}");
    assert!(is_template(template));
    assert_eq!(ok(template, &worker()), "true");
}

#[test]
fn fields_read_go_zero_values_when_unset() {
    let d = worker();
    assert_eq!(
        ok(
            "[{{ .MachineConfig.MachineInstall.InstallExtraKernelArgs }}]",
            &d
        ),
        "[[]]"
    );
    assert_eq!(
        ok("{{ .MachineConfig.MachineInstall.InstallWipe }}", &d),
        "<nil>"
    );
    assert_eq!(ok("{{ .MachineConfig.MachineKubelet }}", &d), "<nil>");
    assert_eq!(
        ok(
            "{{ if .MachineConfig.MachineKubelet }}set{{ else }}unset{{ end }}",
            &d
        ),
        "unset"
    );
    assert_eq!(
        ok("{{ .MachineConfig.MachineNetwork.NameServers | len }}", &d),
        "0"
    );
    assert_eq!(
        ok("{{ .ClusterConfig.ClusterNetwork.PodSubnet }}", &d),
        "[]"
    );
    assert_eq!(ok("{{ .MachineConfig.MachineNodeTaints }}", &d), "map[]");
}

#[test]
fn values_print_like_go() {
    let d = worker();
    assert_eq!(
        ok("{{ .MachineConfig.MachineCertSANs }}", &d),
        "[10.0.0.1 node1.example.com]"
    );
    assert_eq!(
        ok(r#"{{ printf "%v" .MachineConfig.MachineCertSANs }}"#, &d),
        "[10.0.0.1 node1.example.com]"
    );
    assert_eq!(
        ok(
            r#"{{ printf "%s|%d|%q" .ClusterConfig.ClusterName 7 "x" }}"#,
            &d
        ),
        r#"demo|7|"x""#
    );
    assert_eq!(
        ok("{{ .MachineConfig.MachineNodeLabels }}", &d),
        "map[topology.kubernetes.io/zone:a]"
    );
    assert_eq!(
        ok("{{ .ClusterConfig.ControlPlane.Endpoint }}", &d),
        "https://10.0.0.10:6443"
    );
    assert_eq!(
        ok("{{ .ClusterConfig.ControlPlane.Endpoint.Hostname }}", &d),
        "10.0.0.10"
    );
    assert_eq!(
        ok(
            "{{ .ClusterConfig.AdminKubeconfigConfig.AdminKubeconfigCertLifetime }}",
            &d
        ),
        "8760h0m0s"
    );
    assert_eq!(
        ok(
            "{{ (index .MachineConfig.MachineFiles 0).FilePermissions }}",
            &d
        ),
        "0o644"
    );
    assert_eq!(
        ok(
            "{{ index .MachineConfig.MachineNodeLabels \"topology.kubernetes.io/zone\" }}",
            &d
        ),
        "a"
    );
    assert_eq!(
        ok(
            "{{ index .MachineConfig.MachineNodeLabels \"nope\" }}|{{ .MachineConfig.MachineNodeLabels.nope }}",
            &d
        ),
        "|<no value>"
    );
}

#[test]
fn trimming_and_comments() {
    let d = worker();
    assert_eq!(
        ok("a  {{- .ClusterConfig.ClusterName -}}  \n b", &d),
        "ademob"
    );
    assert_eq!(ok("a {{/* a comment */}}b", &d), "a b");
    assert_eq!(ok("x\n  {{- /* gone */ -}}\n  y", &d), "xy");
    assert_eq!(ok("{{ -3 }}", &d), "-3");
}

#[test]
fn conditionals_ranges_and_variables() {
    let d = worker();
    let t = r#"{{ if eq .MachineConfig.MachineType "controlplane" }}cp{{ else if eq .MachineConfig.MachineType "worker" }}w{{ else }}?{{ end }}"#;
    assert_eq!(ok(t, &d), "w");
    assert_eq!(
        ok(
            "{{ with .MachineConfig.MachineNetwork }}{{ .NetworkHostname }}{{ end }}",
            &d
        ),
        "hostname1"
    );
    assert_eq!(
        ok(
            "{{ with .MachineConfig.MachineKubelet }}k{{ else }}none{{ end }}",
            &d
        ),
        "none"
    );
    assert_eq!(
        ok(
            "{{ range $i, $s := .MachineConfig.MachineCertSANs }}{{ $i }}={{ $s }};{{ end }}",
            &d
        ),
        "0=10.0.0.1;1=node1.example.com;"
    );
    assert_eq!(
        ok(
            "{{ range .MachineConfig.MachineNetwork.NameServers }}x{{ else }}empty{{ end }}",
            &d
        ),
        "empty"
    );
    assert_eq!(
        ok(
            "{{ range $k, $v := .MachineConfig.MachineNodeLabels }}{{ $k }}:{{ $v }}{{ end }}",
            &d
        ),
        "topology.kubernetes.io/zone:a"
    );
    assert_eq!(
        ok(
            "{{ $n := .ClusterConfig.ClusterName }}{{ $n = printf \"%s-x\" $n }}{{ $n }}",
            &d
        ),
        "demo-x"
    );
    assert_eq!(
        ok(
            "{{ range .MachineConfig.MachineCertSANs }}{{ if hasPrefix \"10.\" . }}{{ continue }}{{ end }}{{ . }}{{ break }}{{ end }}",
            &d
        ),
        "node1.example.com"
    );
    assert_eq!(ok("{{ range $i := 3 }}{{ $i }}{{ end }}", &d), "012");
    assert_eq!(
        ok(
            "{{ $.ClusterConfig.ClusterName }}{{ with .MachineConfig }}/{{ $.ClusterConfig.ClusterName }}{{ end }}",
            &d
        ),
        "demo/demo"
    );
}

#[test]
fn sprig_functions() {
    let d = worker();
    let cases = [
        (
            r#"{{ .ClusterConfig.ClusterName | upper | quote }}"#,
            r#""DEMO""#,
        ),
        (r#"{{ .ClusterConfig.ClusterName | squote }}"#, "'demo'"),
        (
            r#"{{ .MachineConfig.MachineCertSANs | join "," }}"#,
            "10.0.0.1,node1.example.com",
        ),
        (
            r#"{{ (split "." .MachineConfig.MachineNetwork.NetworkHostname)._0 }}"#,
            "hostname1",
        ),
        (r#"{{ splitList "." "a.b.c" | last }}"#, "c"),
        (r#"{{ first .MachineConfig.MachineCertSANs }}"#, "10.0.0.1"),
        (
            r#"{{ .MachineConfig.MachineInstall.InstallDisk | trimPrefix "/dev/" }}"#,
            "sda",
        ),
        (
            r#"{{ "  x  " | trim }}{{ "a.yaml" | trimSuffix ".yaml" }}{{ "Ab" | lower }}"#,
            "xaab",
        ),
        (
            r#"{{ replace "." "-" .MachineConfig.MachineNetwork.NetworkHostname }}"#,
            "hostname1",
        ),
        (
            r#"{{ .MachineConfig.MachineKubelet | default "none" }}"#,
            "none",
        ),
        (
            r#"{{ .MachineConfig.MachineInstall.InstallDisk | default "none" }}"#,
            "/dev/sda",
        ),
        (
            r#"{{ and .ClusterConfig.ClusterName .MachineConfig.MachineType }}|{{ or "" "b" }}|{{ not true }}"#,
            "worker|b|false",
        ),
        (
            r#"{{ ne .MachineConfig.MachineType "worker" }}{{ hasSuffix ":v1.12.0" .MachineConfig.MachineInstall.InstallImage }}"#,
            "falsetrue",
        ),
        (
            r#"{{ len .ClusterConfig.ClusterNetwork.ServiceSubnet }}{{ toString 5 }}"#,
            "15",
        ),
        (
            r#"{{ index .MachineConfig.MachineCertSANs 1 }}"#,
            "node1.example.com",
        ),
        (r#"{{ "a\nb" | indent 2 }}"#, "  a\n  b"),
    ];
    for (t, want) in cases {
        assert_eq!(ok(t, &d), want, "{t}");
    }
}

// talhelper pkg/templating TestRenderTemplate, on plain data.
#[test]
fn plain_data_like_talhelper_unit_tests() {
    let data = json!({"DummyField1": "val1", "DummyField2": "val2"});
    let run = |t: &str| Template::parse(t).and_then(|t| t.render(Data::Plain(&data), Escape::None));
    assert_eq!(
        run(r#"{{ "Simple Value" }}"#).ok().as_deref(),
        Some("Simple Value")
    );
    assert_eq!(run("{{ .DummyField1 }}").ok().as_deref(), Some("val1"));
    assert_eq!(
        run("f1:{{ .DummyField1 }} f2:{{ .DummyField2 }}")
            .ok()
            .as_deref(),
        Some("f1:val1 f2:val2")
    );
    assert_eq!(
        run("{{ .DummyField1 | upper }}").ok().as_deref(),
        Some("VAL1")
    );
    assert_eq!(
        run("{{ .NonExistantField }}").ok().as_deref(),
        Some("<no value>")
    );
    let names = json!({"ClusterName": "demo", "Hostname": "cp1"});
    let t = Template::parse("{{.ClusterName}}-{{.Hostname}}.yaml").expect("parses");
    assert_eq!(
        t.render(Data::Plain(&names), Escape::None).ok().as_deref(),
        Some("demo-cp1.yaml")
    );
}

#[test]
fn html_escaping_like_talhelpers_html_template() {
    let data = json!({"v": "a&b<'\">", "n": null});
    let t = Template::parse("<{{ .v }}>{{ .missing }}|{{ .v | quote }}").expect("parses");
    assert_eq!(
        t.render(Data::Plain(&data), Escape::Html).ok().as_deref(),
        Some("<a&amp;b&lt;&#39;&#34;&gt;>|&#34;a&amp;b&lt;&#39;\\&#34;&gt;&#34;")
    );
    assert_eq!(
        t.render(Data::Plain(&data), Escape::None).ok().as_deref(),
        Some("<a&b<'\">><no value>|\"a&b<'\\\">\"")
    );
}

#[test]
fn is_template_matches_talhelper() {
    assert!(is_template("{{ .A }}"));
    assert!(is_template("}} only closing"));
    assert!(!is_template("{ .No.Spaces }"));
    assert!(!is_template(""));
}

// talhelper pkg/patcher testdata templating0..2: templated `@file` patches.
#[test]
fn templated_patch_files_render_and_apply() {
    let base = doc(
        "version: v1alpha1\nmachine:\n  type: worker\n  token: \"\"\n  certSANs: []\n  network:\n    hostname: foo.bar\n",
    );
    let input0 = "---\nmachine:\n  logging:\n    destinations:\n      - endpoint: \"udp://127.0.0.1:123456/\"\n        format: json_lines\n        extraTags:\n          server: \"{{ .MachineConfig.MachineNetwork.NetworkHostname }}\"\n";
    let text = ok(input0, &base);
    let patch = Patch::parse("patch @templating0_input.yaml", &text).expect("rendered patch loads");
    let out = apply_patches(vec![base], &[patch]).expect("applies");
    assert_eq!(
        out[0]["machine"]["logging"]["destinations"][0]["extraTags"]["server"],
        json!("foo.bar")
    );

    let base1 = doc(
        "version: v1alpha1\nmachine:\n  network:\n    hostname: hostname1\n    interfaces:\n      - interface: eth0\n        dhcp: false\n",
    );
    let input1 = "apiVersion: v1alpha1\nkind: ExtensionServiceConfig\nname: \"{{ .MachineConfig.MachineNetwork.NetworkHostname }}\"\nconfigFiles:\n    - content: hello world\n      mountPath: /etc/foo\nenvironment:\n    - FOO=BAR\n";
    let patch = Patch::parse("patch @templating1_input.yaml", &ok(input1, &base1)).expect("loads");
    let out = apply_patches(vec![base1], &[patch]).expect("applies");
    assert_eq!(out.len(), 2);
    assert_eq!(out[1]["name"], json!("hostname1"));

    let base2 = doc(
        "version: v1alpha1\nmachine:\n    type: worker\n    network:\n        hostname: hostname1\ncluster:\n    network:\n        serviceSubnets:\n            - 10.96.0.0/12\n",
    );
    let input2 = "---\napiVersion: v1alpha1\nkind: NetworkRuleConfig\nname: testing\nportSelector:\n  ports:\n{{- if ne .MachineConfig.MachineType \"worker\" }}\n    - 50000\n{{- else }}\n    - 50001\n{{- end }}\n  protocol: tcp\ningress:\n{{- range $subnet := .ClusterConfig.ClusterNetwork.ServiceSubnet }}\n  - subnet: {{ $subnet }}\n{{- end -}}\n";
    let rendered = ok(input2, &base2);
    assert_eq!(
        rendered,
        "---\napiVersion: v1alpha1\nkind: NetworkRuleConfig\nname: testing\nportSelector:\n  ports:\n    - 50001\n  protocol: tcp\ningress:\n  - subnet: 10.96.0.0/12"
    );
    let patch = Patch::parse("patch @templating2_input.yaml", &rendered).expect("loads");
    let out = apply_patches(vec![base2], &[patch]).expect("applies");
    assert_eq!(
        out[1]["portSelector"],
        json!({"ports": [50001], "protocol": "tcp"})
    );
    assert_eq!(out[1]["ingress"], json!([{"subnet": "10.96.0.0/12"}]));
}

#[test]
fn error_unclosed_action() {
    let e = err("line one\nsecond {{ .MachineConfig", &worker());
    assert!(matches!(e, TemplateError::Parse { .. }), "{e}");
    assert_eq!(e.line_col(), (2, 8));
    assert_eq!(e.offset(), 16);
    assert!(e.to_string().contains("unclosed action"), "{e}");
}

#[test]
fn error_unknown_function_suggests_the_closest() {
    let e = err("{{ .ClusterConfig.ClusterName | uper }}", &worker());
    assert_eq!(
        e.to_string(),
        "template line 1, column 33: function \"uper\" not defined (did you mean `upper`?)"
    );
}

#[test]
fn error_unknown_field_suggests_the_closest() {
    let e = err(
        "x\n  {{ .MachineConfig.MachineInstall.InstallImg }}",
        &worker(),
    );
    assert_eq!(e.line_col(), (2, 6));
    let text = e.to_string();
    assert!(
        text.contains("executing `{{ .MachineConfig.MachineInstall.InstallImg }}`"),
        "{text}"
    );
    assert!(text.contains("can't evaluate field InstallImg in type *v1alpha1.InstallConfig (did you mean InstallImage?)"), "{text}");

    let e = err("{{ .machine.install.image }}", &worker());
    assert!(
        e.to_string().contains("templates use Go field names: `machine` is the YAML key of MachineConfig; did you mean MachineConfig?"),
        "{e}"
    );
}

#[test]
fn error_nil_pointer_names_the_unset_section() {
    let e = err(
        "{{ .MachineConfig.MachineKubelet.KubeletImage }}",
        &worker(),
    );
    assert!(
        e.to_string().contains("nil pointer evaluating *v1alpha1.KubeletConfig.KubeletImage (hint: .MachineConfig.MachineKubelet is not set in this machine config)"),
        "{e}"
    );
}

#[test]
fn error_key_material_is_not_templated() {
    let e = err("{{ .MachineConfig.MachineToken }}", &worker());
    assert!(e.to_string().contains("field MachineToken of v1alpha1.MachineConfig is not available to templates: it holds key material"), "{e}");
    assert!(!e.to_string().contains("abc.def"));
}

#[test]
fn error_function_argument_types() {
    let e = err("{{ .MachineConfig.MachineCertSANs | upper }}", &worker());
    assert!(
        e.to_string()
            .contains("error calling upper: wrong type for value; expected string; got []string"),
        "{e}"
    );
    let e = err(
        r#"{{ if eq .MachineConfig.MachineNetwork.NetworkInterfaces "x" }}{{ end }}"#,
        &worker(),
    );
    assert!(e.to_string().contains("non-comparable type"), "{e}");
    let e = err("{{ .MachineConfig.MachineInstall }}", &worker());
    assert!(
        e.to_string()
            .contains("printing a whole v1alpha1.InstallConfig is not supported"),
        "{e}"
    );
}

#[test]
fn error_syntax() {
    let d = worker();
    for (t, want) in [
        ("{{ if true }}x", "{{if}} without {{end}}"),
        ("{{ end }}", "unexpected {{end}}"),
        ("{{ $x }}", "undefined variable \"$x\""),
        ("{{ \"unterminated }}", "unterminated quoted string"),
        ("{{ .A | }}", "missing command in pipeline"),
        ("{{ define \"x\" }}{{ end }}", "not supported"),
        ("{{ break }}", "{{break}} outside {{range}}"),
        ("{{ 1 2 }}", "can't give argument to non-function"),
    ] {
        let e = err(t, &d);
        assert!(e.to_string().contains(want), "{t}: {e}");
    }
}

/// Hostile templates end with an error, not a hang, an abort or a stack overflow.
#[test]
fn hostile_templates_are_bounded() {
    let data = json!({});
    let plain =
        |t: &str| Template::parse(t).and_then(|tpl| tpl.render(Data::Plain(&data), Escape::None));
    let e = plain("{{ range 100000000000 }}x{{ end }}").unwrap_err();
    assert!(
        e.to_string().contains("exceeds the 1000000 iterations"),
        "{e}"
    );
    let e = plain("{{ range 1000 }}{{ range 1000 }}{{ range 1000 }}{{ end }}{{ end }}{{ end }}")
        .unwrap_err();
    assert!(e.to_string().contains("range iterations"), "{e}");
    let e = plain("{{ range 1000000 }}xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx{{ end }}").unwrap_err();
    assert!(e.to_string().contains("more than 16777216 bytes"), "{e}");
    let deep = format!(
        "{}x{}",
        "{{ if 1 }}".repeat(20_000),
        "{{ end }}".repeat(20_000)
    );
    let e = plain(&deep).unwrap_err();
    assert!(e.to_string().contains("nest more than 100 levels"), "{e}");
    let parens = format!("{{{{ {}1{} }}}}", "(".repeat(20_000), ")".repeat(20_000));
    let e = plain(&parens).unwrap_err();
    assert!(e.to_string().contains("nest more than 100 levels"), "{e}");
    let e = plain("{{ indent 1000000000 \"x\" }}").unwrap_err();
    assert!(e.to_string().contains("indent width"), "{e}");
    // Go's fmt: a width past 1e6 is "crazy long" and ends the format.
    assert_eq!(
        plain("a{{ printf \"%0999999999d|%s\" 1 \"x\" }}").unwrap(),
        "a%!(NOVERB)%!(EXTRA int=1, string=x)"
    );
    assert_eq!(plain("{{ printf \"%5d\" 42 }}").unwrap(), "   42");
    // Nesting within the limit still renders.
    let ok = format!("{}x{}", "{{ if 1 }}".repeat(50), "{{ end }}".repeat(50));
    assert_eq!(plain(&ok).unwrap(), "x");
}
