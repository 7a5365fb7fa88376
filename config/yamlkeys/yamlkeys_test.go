package yamlkeys

import (
	"reflect"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

func TestClosest(t *testing.T) {
	known := []string{"trusted_sources", "ufw", "allow", "egress"}
	for w, want := range map[string]string{"trusted_source": "trusted_sources", "alow": "allow", "UFW": "ufw", "egres": "egress", "policy": "", "x": ""} {
		if got := Closest(w, known); got != want {
			t.Errorf("Closest(%q) = %q, want %q", w, got, want)
		}
	}
}

type doc struct {
	Name  string   `yaml:"name"`
	Ports []string `yaml:"ports"`
	Inner *struct {
		Flag bool `yaml:"flag"`
	} `yaml:"inner"`
}

// An unknown key is named with its line, where it is and the nearest
// known key; a type error with the key at its line and what is wanted.
func TestCheckAndTypeError(t *testing.T) {
	var root yaml.Node
	if err := yaml.Unmarshal([]byte("name: x\ninner:\n  flg: true\n"), &root); err != nil {
		t.Fatal(err)
	}
	_, err := Check(&root, reflect.TypeOf(doc{}))
	if err == nil || !strings.Contains(err.Error(), `line 3: unknown key "flg" in inner: did you mean "flag"?`) {
		t.Errorf("unknown key: %v", err)
	}
	if err := yaml.Unmarshal([]byte("name: x\nports: 80\n"), &root); err != nil {
		t.Fatal(err)
	}
	paths, err := Check(&root, reflect.TypeOf(doc{}))
	if err != nil {
		t.Fatal(err)
	}
	var d doc
	err = TypeError(root.Decode(&d), paths, map[string]string{"[]string": "a list"}, "yamlkeys.")
	if err == nil || err.Error() != `line 2: ports: want a list, not "80"` {
		t.Errorf("type error: %v", err)
	}
	if got := paths.At("ports", errString("bad")).Error(); got != "line 2: ports: bad" {
		t.Errorf("At = %q", got)
	}
}

type errString string

func (e errString) Error() string { return string(e) }
