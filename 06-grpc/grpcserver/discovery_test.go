package grpcserver_test

import (
	"errors"
	"io"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/protobuf/testing/protocmp"
)

func TestReflection_ListsEveryServiceSoThatGrpcurlCanCallThem(t *testing.T) {
	s := start(t, newLog(t))
	reflection := reflectionpb.NewServerReflectionClient(dial(t, s.addr))

	stream, err := reflection.ServerReflectionInfo(t.Context())
	require.NoError(t, err)
	err = stream.Send(&reflectionpb.ServerReflectionRequest{
		MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{},
	})
	if !errors.Is(err, io.EOF) { // io.EOF: the server ended the stream already, and Recv says why
		require.NoError(t, err)
	}
	resp, err := stream.Recv()
	require.NoError(t, err)
	require.NoError(t, stream.CloseSend())

	var got []string
	for _, service := range resp.GetListServicesResponse().GetService() {
		got = append(got, service.GetName())
	}
	want := []string{
		"grpc.health.v1.Health",
		"grpc.reflection.v1.ServerReflection",
		"grpc.reflection.v1alpha.ServerReflection",
		"realtime.v1.Updates",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("services (-want +got):\n%s", diff)
	}
}

func TestHealth_SaysServingForTheServerAndForUpdates(t *testing.T) {
	s := start(t, newLog(t))
	health := grpc_health_v1.NewHealthClient(dial(t, s.addr))

	for _, service := range []string{"", "realtime.v1.Updates"} {
		got, err := health.Check(t.Context(), &grpc_health_v1.HealthCheckRequest{Service: service})
		require.NoError(t, err, "service %q", service)
		want := &grpc_health_v1.HealthCheckResponse{Status: grpc_health_v1.HealthCheckResponse_SERVING}
		if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
			t.Errorf("service %q (-want +got):\n%s", service, diff)
		}
	}
}
