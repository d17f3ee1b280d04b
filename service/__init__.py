"""moeplan's gRPC edge: protobuf <-> pydantic conversion, servicer, server and client."""
