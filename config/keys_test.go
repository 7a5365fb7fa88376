package config

import (
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/dockmoat/dockmoat/config/yamlkeys"
)

// TestKeysDocumented: Keys lists exactly the keys the parser takes, and
// the commented example and the reference name each one.
func TestKeysDocumented(t *testing.T) {
	var want []string
	for _, k := range yamlkeys.KeysOf(reflect.TypeOf(file{})) {
		want = append(want, k)
		f, _ := reflect.TypeOf(file{}).FieldByName(yamlkeys.FieldOf(reflect.TypeOf(file{}), k))
		if f.Type.Kind() == reflect.Slice && f.Type.Elem().Kind() == reflect.Struct {
			for _, sub := range yamlkeys.KeysOf(f.Type.Elem()) {
				want = append(want, k+"."+sub)
			}
		}
	}
	var got []string
	for _, k := range Keys {
		got = append(got, k.Key)
		if k.Values == "" || k.Doc == "" {
			t.Errorf("%s: undocumented", k.Key)
		}
	}
	slices.Sort(want)
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("Keys = %v\nthe parser takes %v", got, want)
	}
	for _, doc := range []string{"../deploy/config.example.yaml", "../docs/reference.md"} {
		data, err := os.ReadFile(doc)
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range Keys {
			if !strings.Contains(k.Key, ".") && !strings.Contains(string(data), k.Key+":") {
				t.Errorf("%s does not show %s:", doc, k.Key)
			}
		}
	}
}
