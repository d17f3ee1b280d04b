"""moeplan's solver library: schema, cost model, CP-SAT planner and verifier. Never imports gRPC."""
