package dockerwatch

import (
	"context"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/moby/moby/client"
)

// docker20Ingress is what Docker 20.10 answers for the ingress network's
// verbose view (abridged from the swarm test bed): a service "" whose
// VIP "<nil>" the SDK's types refuse.
const docker20Ingress = `{"Name":"ingress","Peers":[{"Name":"a","IP":"198.51.100.1"},{"Name":"b","IP":"198.51.100.2"}],"Services":{
 "":{"VIP":"<nil>","Ports":[],"LocalLBIndex":0,"Tasks":[{"Name":"ingress-endpoint","EndpointIP":"10.0.0.2","Info":{"Host IP":"198.51.100.1"}}]},
 "mesh":{"VIP":"10.0.0.4","Ports":["Target: 95, Publish: 8095"],"LocalLBIndex":256,"Tasks":[]}}}`

func TestIngressViewReadsDocker20(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "docker.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case strings.HasSuffix(r.URL.Path, "/networks/ingress") && r.URL.Query().Get("verbose") == "true":
			_, _ = w.Write([]byte(docker20Ingress))
		default:
			http.Error(w, `{"message":"network nope not found"}`, http.StatusNotFound)
		}
	})}
	go func() { _ = srv.Serve(l) }()
	defer srv.Close()
	c, err := client.New(client.WithHost("unix://" + sock))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cli := Client{c}
	// The SDK's own inspect fails on this answer: the reason for the method.
	if _, err := cli.NetworkInspect(context.Background(), "ingress", client.NetworkInspectOptions{Verbose: true}); err == nil {
		t.Log("the SDK now reads Docker 20.10's ingress view; IngressView may be replaced by NetworkInspect")
	}
	got, err := cli.IngressView(context.Background(), "ingress")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got.Services["mesh"], []string{"Target: 95, Publish: 8095"}) || len(got.Services) != 2 ||
		len(got.Peers) != 2 || got.Peers[1].String() != "198.51.100.2" {
		t.Errorf("view %+v", got)
	}
	if _, err := cli.IngressView(context.Background(), "nope"); !errdefs.IsNotFound(err) {
		t.Errorf("missing network: %v", err)
	}
}
