// Package yamlkeys reads a YAML document strictly and says what is wrong
// in the user's words. The YAML library reports an unknown key as "field
// port not found in type config.fileAllow" and a wrong kind of value as
// "cannot unmarshal !!int `80` into []string": Go type names a user never
// wrote. Check walks the document first against the Go type it decodes
// into and names the line, the key, where it is and the closest known
// key; TypeError rewrites what the decoder still finds with the key at
// that line.
package yamlkeys

import (
	"fmt"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// KeysOf lists the YAML keys of a struct type, in field order.
func KeysOf(t reflect.Type) []string {
	var keys []string
	for i := range t.NumField() {
		if k, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ","); k != "" && k != "-" {
			keys = append(keys, k)
		}
	}
	return keys
}

// Paths is where each line of the document sits: the key path of the
// value that starts on it ("allow[0].ports"), and the first line of each
// path.
type Paths struct {
	byLine map[int]string
	lineOf map[string]int
}

func (d Paths) set(line int, path string) {
	if _, ok := d.byLine[line]; !ok {
		d.byLine[line] = path
	}
	if _, ok := d.lineOf[path]; !ok {
		d.lineOf[path] = line
	}
}

// At prefixes an error about path with its line, when known.
func (d Paths) At(path string, err error) error {
	if l, ok := d.lineOf[path]; ok {
		return fmt.Errorf("line %d: %s: %w", l, path, err)
	}
	return fmt.Errorf("%s: %w", path, err)
}

// Check reports the first unknown key in the document, as decoded into
// t (nil when the document is not a mapping: the decoder then says what
// is wrong), and returns the key path of every line for TypeError.
func Check(root *yaml.Node, t reflect.Type) (Paths, error) {
	paths := Paths{byLine: map[int]string{}, lineOf: map[string]int{}}
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	return paths, walkKeys(root, t, "", paths)
}

func walkKeys(n *yaml.Node, t reflect.Type, path string, paths Paths) error {
	switch {
	case t.Kind() == reflect.Slice && n.Kind == yaml.SequenceNode:
		for i, item := range n.Content {
			p := path + "[" + strconv.Itoa(i) + "]"
			paths.set(item.Line, p)
			if err := walkKeys(item, t.Elem(), p, paths); err != nil {
				return err
			}
		}
	case t.Kind() == reflect.Map && n.Kind == yaml.MappingNode: // lists: NAME: {…}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			p := path + "." + k.Value
			paths.set(k.Line, p)
			if err := walkKeys(v, t.Elem(), p, paths); err != nil {
				return err
			}
		}
	case t.Kind() == reflect.Struct && t != reflect.TypeOf(yaml.Node{}) && n.Kind == yaml.MappingNode:
		known := KeysOf(t)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			p := strings.TrimPrefix(path+"."+k.Value, ".")
			paths.set(k.Line, p)
			paths.set(v.Line, p)
			j := slices.Index(known, k.Value)
			if j < 0 {
				return unknownKey(k, path, known)
			}
			f, _ := t.FieldByName(FieldOf(t, known[j]))
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if err := walkKeys(v, ft, p, paths); err != nil {
				return err
			}
		}
	}
	return nil
}

// FieldOf is the Go field name of a YAML key of t.
func FieldOf(t reflect.Type, key string) string {
	for i := range t.NumField() {
		if k, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ","); k == key {
			return t.Field(i).Name
		}
	}
	return ""
}

func unknownKey(k *yaml.Node, path string, known []string) error {
	where := "at the top level"
	if path != "" {
		where = "in " + path
	}
	msg := fmt.Sprintf("line %d: unknown key %q %s", k.Line, k.Value, where)
	if c := Closest(k.Value, known); c != "" {
		msg += fmt.Sprintf(": did you mean %q?", c)
	}
	return fmt.Errorf("%s (known keys: %s)", msg, strings.Join(known, ", "))
}

var unmarshalRe = regexp.MustCompile("line (\\d+): cannot unmarshal !!(\\w+) `([^`]*)` into (\\S+)")

// TypeError rewrites the decoder's type errors with the key and what it
// wants (wants: what a Go type, as the decoder names it, means to someone
// writing YAML); anything else keeps the library's words, without the
// type names' package (pkg, "config.").
func TypeError(err error, paths Paths, wants map[string]string, pkg string) error {
	te, ok := err.(*yaml.TypeError)
	if !ok {
		return fmt.Errorf("not valid YAML: %s", strings.TrimPrefix(err.Error(), "yaml: "))
	}
	var msgs []string
	for _, e := range te.Errors {
		m := unmarshalRe.FindStringSubmatch(e)
		if m == nil {
			msgs = append(msgs, strings.ReplaceAll(e, pkg, ""))
			continue
		}
		line, _ := strconv.Atoi(m[1])
		want := wants[m[4]]
		if want == "" {
			want = "another kind of value"
		}
		key := paths.byLine[line]
		if key == "" {
			key = "value"
		}
		msgs = append(msgs, fmt.Sprintf("line %d: %s: want %s, not %q", line, key, want, m[3]))
	}
	return fmt.Errorf("%s", strings.Join(msgs, "; "))
}

// Closest is the known word nearest to w by edit distance, when it is
// near enough to be a typo (at most a third of its letters, at least
// one); "" otherwise.
func Closest(w string, known []string) string {
	best, bestD := "", max(1, len(w)/3)+1
	for _, k := range known {
		if d := editDistance(strings.ToLower(w), strings.ToLower(k)); d < bestD {
			best, bestD = k, d
		}
	}
	return best
}

// editDistance is Levenshtein's distance.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}
