package config

// yamlWants says what a Go type of the file means to someone writing YAML.
var yamlWants = map[string]string{
	"[]string":                   `a list, such as ["80", "443/tcp"]`,
	"string":                     "a single value",
	"bool":                       "true or false",
	"[]config.fileAllow":         "a list of rules, each starting with \"- container:\" or \"- service:\"",
	"[]config.fileEgress":        "a list of rules, each starting with \"- container:\" or \"- service:\"",
	"config.fileAllow":           "a rule with keys container or service, ports and from",
	"config.fileEgress":          "a rule with keys container or service, policy and allow",
	"config.file":                "keys and values (see deploy/config.example.yaml)",
	"map[string]config.fileList": "named lists, each NAME: {file: PATH} or NAME: {url: URL, refresh: DURATION}",
	"config.fileList":            "a list with the key file",
}
