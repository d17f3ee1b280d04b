#!/usr/bin/env node
// A moeplan client in Node.js: the standard health check, a Solve of seed instance 004, and the
// field violations of an INVALID_ARGUMENT, decoded from the google.rpc.Status error details.
//
//   cd examples/node && npm ci && node client.js 127.0.0.1:50051
//
// Only the .proto files are needed: moeplan's own from protos/ (loaded at run time by
// @grpc/proto-loader, no code generation) and minimal copies of grpc.health.v1 and google.rpc
// under ./protos. MOEPLAN_TOKEN (bearer token) and MOEPLAN_TLS_CA (a PEM CA file: TLS on) are
// read as by the Python client; MOEPLAN_PROTOS overrides the directory of moeplan's .proto.
// Exit code 0 when every call answered as expected, 1 otherwise.
'use strict';

const fs = require('fs');
const path = require('path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');
const protobuf = require('protobufjs');

const MOEPLAN_PROTOS = process.env.MOEPLAN_PROTOS || path.join(__dirname, '..', '..', 'protos');
const VENDORED_PROTOS = path.join(__dirname, 'protos');

// keepCase: field names as in the .proto (input_len, not inputLen); longs: String: int64 fields
// (objective, bound, token counts) as decimal strings, exact beyond 2^53; enums: String: enum
// values by name ('SOLVE_STATUS_OPTIMAL'); defaults: true: unset fields read as their zero
// value; oneofs: true: each oneof also names the field that is set (instance.model ==
// 'model_spec').
const LOADER_OPTIONS = {
  keepCase: true, longs: String, enums: String, defaults: true, oneofs: true,
  includeDirs: [MOEPLAN_PROTOS, VENDORED_PROTOS],
};
const loaded = grpc.loadPackageDefinition(protoLoader.loadSync(
  ['moeplan/v1/planner.proto', 'grpc/health/v1/health.proto'], LOADER_OPTIONS));
const Planner = loaded.moeplan.v1.Planner;
const Health = loaded.grpc.health.v1.Health;

// The rich error model: google.rpc.Status in the `grpc-status-details-bin` trailer, its details
// packed as google.protobuf.Any (protobufjs bundles any.proto).
const errorTypes = new protobuf.Root();
errorTypes.resolvePath = (origin, target) => path.join(VENDORED_PROTOS, target);
errorTypes.loadSync(['google/rpc/status.proto', 'google/rpc/error_details.proto'],
  { keepCase: true });
const Status = errorTypes.lookupType('google.rpc.Status');
const BadRequest = errorTypes.lookupType('google.rpc.BadRequest');

// instances/seeds/004-moe-16l-tp8-ep8-pp2.yaml as a request: the model field by field, the
// hardware by preset name, the workload; its prose and claimed plan left out.
const SEED_004 = {
  name: 'seed-004-moe-16l-tp8-ep8-pp2',
  model_spec: {
    name: 'seed-004-moe-16l',
    num_layers: 16,
    hidden_size: 1024,
    attention: { kind: 'ATTENTION_KIND_GQA', num_heads: 16, num_kv_heads: 16, head_dim: 64 },
    num_experts: 64,
    top_k: 2,
    expert_ffn_width: 2048,
    gated_ffn: false,
    vocab_size: 32000,
    weight_precision: 'PRECISION_FP8',
  },
  hardware_preset: 'seed-card',
  workload: { input_len: 1024, output_len: 1024, fixed_batch: 128 },
};

function credentials() {
  const ca = process.env.MOEPLAN_TLS_CA;
  return ca ? grpc.credentials.createSsl(fs.readFileSync(ca)) : grpc.credentials.createInsecure();
}

function callMetadata() {
  const metadata = new grpc.Metadata();
  const token = (process.env.MOEPLAN_TOKEN || '').trim();
  if (token) metadata.set('authorization', `Bearer ${token}`);
  return metadata;
}

// A unary call as a promise, with a deadline (the server fits a solve's time limit into it).
function call(client, method, request, seconds) {
  const deadline = new Date(Date.now() + seconds * 1000);
  return new Promise((resolve, reject) => {
    client[method](request, callMetadata(), { deadline }, (error, response) => {
      if (error) reject(error);
      else resolve(response);
    });
  });
}

// Every field violation in a failed call's google.rpc.Status details.
function fieldViolations(error) {
  const violations = [];
  for (const raw of error.metadata ? error.metadata.get('grpc-status-details-bin') : []) {
    const status = Status.decode(raw);
    for (const detail of status.details) {
      if (detail.type_url.endsWith('/google.rpc.BadRequest')) {
        violations.push(...BadRequest.decode(detail.value).field_violations);
      }
    }
  }
  return violations;
}

async function main(address) {
  const health = new Health(address, credentials());
  const planner = new Planner(address, credentials());
  let ok = true;
  try {
    // 1. The standard health check (needs no token).
    const served = await call(health, 'Check', { service: 'moeplan.v1.Planner' }, 10);
    console.log(`health moeplan.v1.Planner: ${served.status}`);
    ok = ok && served.status === 'SERVING';

    // 2. Solve the seed instance.
    const { result } = await call(planner, 'Solve', { instance: SEED_004, time_limit_s: 30 }, 60);
    const d = result.plan.degrees;
    console.log(`solve ${SEED_004.name}: ${result.status}, ${result.objective} GPUs ` +
      `(bound ${result.bound}), tp=${d.tp} pp=${d.pp} dp=${d.dp} cp=${d.cp} ep=${d.ep} ` +
      `etp=${d.etp} edp=${d.edp} replicas=${d.replicas}, batch ${result.plan.batch}`);
    ok = ok && result.status === 'SOLVE_STATUS_OPTIMAL';

    // 3. Bad input: INVALID_ARGUMENT, with one BadRequest field violation per broken rule.
    const bad = { ...SEED_004, workload: { ...SEED_004.workload, input_len: 0 } };
    try {
      await call(planner, 'Solve', { instance: bad }, 10);
      console.log('invalid request: accepted');
      ok = false;
    } catch (error) {
      console.log(`invalid request: ${grpc.status[error.code]}: ${error.details}`);
      const violations = fieldViolations(error);
      for (const v of violations) console.log(`  field violation: ${v.field}: ${v.description}`);
      ok = ok && error.code === grpc.status.INVALID_ARGUMENT && violations.length > 0;
    }
  } catch (error) {  // unreachable server, refused token, deadline...
    console.error(`error: ${grpc.status[error.code] || ''} ${error.details || error.message}`);
    ok = false;
  } finally {
    health.close();
    planner.close();
  }
  return ok;
}

main(process.argv[2] || '127.0.0.1:50051').then((ok) => process.exit(ok ? 0 : 1));
