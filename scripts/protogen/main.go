// Command protogen regenerates a chapter's Go code from its .proto files,
// with no protoc installed: it parses the files with
// github.com/bufbuild/protocompile and hands them to protoc-gen-go and
// protoc-gen-go-grpc, which run as `go tool` entries of this module, so that
// go.mod pins the generators as it pins everything else.
//
// Every .proto file under CHAPTER/proto is compiled, with CHAPTER/proto as
// the import path, and the generated files are written beside it
// (paths=source_relative), as grpc-go's route_guide keeps them.
//
// Usage, from the repository root:
//
//	go run ./scripts/protogen [-root DIR] [-check] CHAPTER...
//
// With -check nothing is written: it exits 1, naming each file, when the
// committed code differs from what the .proto files generate (CI runs it).
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"

	"github.com/bufbuild/protocompile"
	"github.com/bufbuild/protocompile/linker"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/pluginpb"
)

// plugins are the generators, as `go tool` names them: this module's go.mod
// lists both in its tool block.
var plugins = []string{"protoc-gen-go", "protoc-gen-go-grpc"}

// parameter is what every plugin is told: write each file beside its .proto
// file, not under a folder named after the Go import path.
const parameter = "paths=source_relative"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	err := run(ctx, os.Args, os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "protogen:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	flags := flag.NewFlagSet(args[0], flag.ContinueOnError)
	flags.SetOutput(stderr)
	root := flags.String("root", ".", "the folder that holds the chapters")
	check := flags.Bool("check", false, "write nothing; fail if the committed code is stale")
	if err := flags.Parse(args[1:]); err != nil {
		return err
	}
	if flags.NArg() == 0 {
		return errors.New("name a chapter, such as 06-grpc")
	}
	var stale []string
	for _, chapter := range flags.Args() {
		dir := filepath.Join(*root, chapter, "proto")
		files, err := Generate(ctx, dir)
		if err != nil {
			return fmt.Errorf("%s: %w", chapter, err)
		}
		if *check {
			names, err := Stale(dir, files)
			if err != nil {
				return fmt.Errorf("%s: %w", chapter, err)
			}
			for _, name := range names {
				stale = append(stale, filepath.Join(chapter, "proto", name))
			}
			continue
		}
		for _, f := range files {
			path := filepath.Join(dir, f.Name)
			if err := os.WriteFile(path, f.Content, 0o644); err != nil {
				return err
			}
			fmt.Fprintln(stdout, "wrote", filepath.Join(chapter, "proto", f.Name))
		}
	}
	if len(stale) > 0 {
		for _, name := range stale {
			fmt.Fprintln(stderr, "stale:", name)
		}
		return fmt.Errorf("%d generated file(s) differ from what the .proto files generate; "+
			"run: go run ./scripts/protogen %s", len(stale), strings.Join(flags.Args(), " "))
	}
	return nil
}

// File is one generated file: its name, relative to the proto folder, and
// its content.
type File struct {
	Name    string
	Content []byte
}

// Generate compiles every .proto file under dir and returns what the
// plugins generate from them, sorted by name.
func Generate(ctx context.Context, dir string) ([]File, error) {
	names, err := protoFiles(dir)
	if err != nil {
		return nil, err
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("no .proto files under %s", dir)
	}
	compiler := protocompile.Compiler{
		Resolver: protocompile.WithStandardImports(&protocompile.SourceResolver{ImportPaths: []string{dir}}),
		// The comments in the .proto files become the doc comments of the
		// generated code, as with protoc.
		SourceInfoMode: protocompile.SourceInfoStandard,
	}
	compiled, err := compiler.Compile(ctx, names...)
	if err != nil {
		return nil, err
	}
	request := &pluginpb.CodeGeneratorRequest{FileToGenerate: names, Parameter: proto.String(parameter)}
	seen := map[string]bool{}
	for _, f := range compiled {
		request.ProtoFile = appendWithImports(request.ProtoFile, f, seen)
	}
	var files []File
	for _, plugin := range plugins {
		generated, err := runPlugin(ctx, plugin, request)
		if err != nil {
			return nil, err
		}
		files = append(files, generated...)
	}
	slices.SortFunc(files, func(a, b File) int { return strings.Compare(a.Name, b.Name) })
	return files, nil
}

// protoFiles lists the .proto files under dir, relative to it, with forward
// slashes, as imports name them.
func protoFiles(dir string) ([]string, error) {
	var names []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || filepath.Ext(path) != ".proto" {
			return err
		}
		rel, err := filepath.Rel(dir, path)
		names = append(names, filepath.ToSlash(rel))
		return err
	})
	return names, err
}

// appendWithImports appends f's descriptor after those of the files it
// imports: a plugin needs every file it sees to follow its imports.
func appendWithImports(protos []*descriptorpb.FileDescriptorProto, f protoreflect.FileDescriptor, seen map[string]bool) []*descriptorpb.FileDescriptorProto {
	if seen[f.Path()] {
		return protos
	}
	seen[f.Path()] = true
	for i := range f.Imports().Len() {
		protos = appendWithImports(protos, f.Imports().Get(i).FileDescriptor, seen)
	}
	if result, ok := f.(linker.Result); ok {
		// The descriptor as parsed, with its source info (the comments).
		return append(protos, result.FileDescriptorProto())
	}
	return append(protos, protodesc.ToFileDescriptorProto(f))
}

// runPlugin runs `go tool plugin` with the request on its stdin, as protoc
// would, and returns the files of its response.
func runPlugin(ctx context.Context, plugin string, request *pluginpb.CodeGeneratorRequest) ([]File, error) {
	input, err := proto.Marshal(request)
	if err != nil {
		return nil, err
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "go", "tool", plugin)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = bytes.NewReader(input), &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("go tool %s: %w\n%s", plugin, err, stderr.Bytes())
	}
	var response pluginpb.CodeGeneratorResponse
	if err := proto.Unmarshal(stdout.Bytes(), &response); err != nil {
		return nil, fmt.Errorf("go tool %s: read its response: %w", plugin, err)
	}
	if response.Error != nil {
		return nil, fmt.Errorf("go tool %s: %s", plugin, response.GetError())
	}
	var files []File
	for _, f := range response.File {
		if f.GetInsertionPoint() != "" {
			return nil, fmt.Errorf("go tool %s: insertion points are not supported (%s)", plugin, f.GetName())
		}
		files = append(files, File{Name: filepath.FromSlash(f.GetName()), Content: []byte(f.GetContent())})
	}
	return files, nil
}

// Stale returns the names of the files under dir that differ from the
// generated ones: changed, missing, or generated Go code (*.pb.go) that no
// .proto file generates any more.
func Stale(dir string, generated []File) ([]string, error) {
	var stale []string
	want := map[string]bool{}
	for _, f := range generated {
		want[f.Name] = true
		have, err := os.ReadFile(filepath.Join(dir, f.Name))
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		if err != nil || !bytes.Equal(have, f.Content) {
			stale = append(stale, f.Name)
		}
	}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".pb.go") {
			return err
		}
		rel, err := filepath.Rel(dir, path)
		if err == nil && !want[rel] {
			stale = append(stale, rel)
		}
		return err
	})
	slices.Sort(stale)
	return stale, err
}
