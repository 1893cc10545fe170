// The files under stages/ are earlier versions of chapter files, laid over a
// copy of a chapter by scripts/stage. They do not build on their own; this
// go.mod keeps them out of the scripts module and the workspace.
module realtime/scripts/stages

go 1.26
