// A gRPC client in another language (Node.js) that has no .proto file and no
// generated code: it discovers both clipsearch services through server reflection,
// then embeds a text, stores the vector and searches it back.
//
//   node reflection_client.mjs ENCODER_HOST:PORT INDEX_HOST:PORT
//
// Prints one JSON object; tests/contract/test_interop.py checks it.
import grpc from '@grpc/grpc-js';
import reflectionClient from 'grpc-js-reflection-client';

const { GrpcReflection } = reflectionClient;
const insecure = () => grpc.ChannelCredentials.createInsecure();
const loadOptions = { keepCase: true, enums: String, longs: String, defaults: true, oneofs: true };

async function discover(address, serviceName) {
  const reflection = new GrpcReflection(address, insecure());
  const services = await reflection.listServices();
  const descriptor = await reflection.getDescriptorBySymbol(serviceName);
  const packageObject = descriptor.getPackageObject(loadOptions);
  const Service = serviceName.split('.').reduce((node, part) => node[part], packageObject);
  return { services, client: new Service(address, insecure()) };
}

function call(client, method, request) {
  return new Promise((resolve, reject) => {
    const deadline = new Date(Date.now() + 30_000);
    client[method](request, { deadline }, (error, response) => (error ? reject(error) : resolve(response)));
  });
}

// Descriptors fetched by reflection describe a map<string, V> as its wire form, a
// repeated {key, value} entry message, and protobufjs loads it that way.
const entries = (object) => Object.entries(object).map(([key, value]) => ({ key, value }));
const fromEntries = (list) => Object.fromEntries((list || []).map(({ key, value }) => [key, value]));

function norm(bytes) {
  const buffer = Buffer.from(bytes);
  let sum = 0;
  for (let offset = 0; offset < buffer.length; offset += 4) sum += buffer.readFloatLE(offset) ** 2;
  return Math.sqrt(sum);
}

const [encoderAddress, indexAddress] = process.argv.slice(2);
const encoder = await discover(encoderAddress, 'clipsearch.v1.EncoderService');
const index = await discover(indexAddress, 'clipsearch.v1.IndexService');

const { model } = await call(encoder.client, 'GetModelInfo', {});
const embedded = await call(encoder.client, 'Embed', { inputs: [{ text: 'a red dress' }] });
const vector = embedded.embeddings[0].float32_le;

const collection = 'interop_node';
await call(index.client, 'CreateCollection', {
  config: { name: collection, dimension: model.embedding_dim, metric: 'METRIC_COSINE', model_fingerprint: model.fingerprint },
  exist_ok: true,
});
await call(index.client, 'Upsert', {
  collection,
  items: [{ id: 'node-1', vector: { float32_le: vector }, metadata: entries({ title: { string_value: 'Red dress' } }) }],
  model_fingerprint: embedded.model_fingerprint,
});
const found = await call(index.client, 'Search', { collection, queries: [{ float32_le: vector }], k: 1 });
let notFound = null;
try {
  await call(index.client, 'DescribeCollection', { collection: 'no_such_collection' });
} catch (error) {
  notFound = grpc.status[error.code];
}

console.log(JSON.stringify({
  encoder_services: encoder.services,
  index_services: index.services,
  model: { name: model.name, embedding_dim: model.embedding_dim, fingerprint: model.fingerprint },
  vector_bytes: vector.length,
  vector_norm: norm(vector),
  hits: found.results[0].hits.map((hit) => ({
    id: hit.id,
    score: hit.score,
    title: fromEntries(hit.metadata).title.string_value,
  })),
  unknown_collection_status: notFound,
}));
process.exit(0);
