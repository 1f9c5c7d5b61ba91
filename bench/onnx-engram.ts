// The same Engram layer as an ONNX graph, for onnxruntime-node (what a Node user would
// otherwise reach for). Row ids come in already hashed; the fp32 table is a graph input
// (it is larger than protobuf's 2 GB limit for initializers); the small weights are
// initializers. Ops: Gather, MatMul, Add, ReduceMean/ReduceSum, Sqrt, Div, Sign, Abs,
// Max, Sigmoid, Conv (group = channels, causal left padding), Transpose, Reshape, Slice.
import { createRequire } from 'node:module';

import type { onnx as OnnxTypes } from 'onnx-proto';

// onnx-proto is CommonJS whose exports Node's ESM loader cannot see by name.
const { onnx } = createRequire(import.meta.url)('onnx-proto') as { onnx: typeof OnnxTypes };

import type { BaselineLayer } from '../test/reference/paper-layer.js';

type Attr = number | number[] | { f: number };

function attribute(name: string, value: Attr): OnnxTypes.IAttributeProto {
  const T = onnx.AttributeProto.AttributeType;
  if (Array.isArray(value)) return { name, type: T.INTS, ints: value };
  if (typeof value === 'object') return { name, type: T.FLOAT, f: value.f };
  return { name, type: T.INT, i: value };
}

export function engramOnnxModel(L: BaselineLayer, batch: number, seqLen: number): Uint8Array {
  const { hidden, hc, heads, cols, kernelSize: K, dilation } = L;
  const features = heads * cols;
  const width = (hc + 1) * hidden;
  const channels = hc * hidden;
  const nodes: OnnxTypes.INodeProto[] = [];
  const inits: OnnxTypes.ITensorProto[] = [];
  let counter = 0;
  const op = (type: string, inputs: string[], attrs: Record<string, Attr> = {}, out = `t${counter++}`): string => {
    nodes.push({ opType: type, input: inputs, output: [out], attribute: Object.entries(attrs).map(([n, v]) => attribute(n, v)) });
    return out;
  };
  const F = onnx.TensorProto.DataType.FLOAT;
  const I64 = onnx.TensorProto.DataType.INT64;
  const floatInit = (name: string, dims: number[], values: Float32Array) => {
    inits.push({ name, dims, dataType: F, rawData: new Uint8Array(values.buffer.slice(values.byteOffset, values.byteOffset + values.byteLength)) });
    return name;
  };
  const intInit = (name: string, values: number[]) => {
    inits.push({ name, dims: [values.length], dataType: I64, int64Data: values });
    return name;
  };
  const scalar = (name: string, v: number) => floatInit(name, [], Float32Array.of(v));

  // W^T [features, width] so MatMul(e, W^T) is the projection.
  const wT = new Float32Array(features * width);
  for (let n = 0; n < width; n++) for (let k = 0; k < features; k++) wT[k * width + n] = L.keyValueWeight[n * features + k];
  floatInit('kv_weight_t', [features, width], wT);
  floatInit('kv_bias', [width], L.keyValueBias);
  floatInit('norm1', [hc, hidden], L.norm1);
  floatInit('norm2', [hc, hidden], L.norm2);
  floatInit('conv_norm', [hc, hidden], L.convNorm);
  floatInit('conv_weight', [channels, 1, K], L.convWeight);
  scalar('gate_eps', L.gateEps);
  scalar('conv_eps', L.convEps);
  scalar('inv_sqrt_hidden', 1 / Math.sqrt(hidden));
  scalar('clamp', 1e-6);
  intInit('shape_e', [batch, seqLen, features]);
  intInit('shape_keys', [batch, seqLen, hc, hidden]);
  intInit('shape_value', [batch, seqLen, 1, hidden]);
  intInit('shape_channels', [batch, seqLen, channels]);
  intInit('keys_start', [0]);
  intInit('keys_end', [hc * hidden]);
  intInit('value_end', [width]);
  intInit('last_axis', [-1]);

  const rms = (x: string, weight: string, eps: string) => {
    const mean = op('ReduceMean', [op('Mul', [x, x])], { axes: [-1], keepdims: 1 });
    return op('Mul', [op('Div', [x, op('Sqrt', [op('Add', [mean, eps])])]), weight]);
  };

  const rows = op('Gather', ['table', 'row_ids'], { axis: 0 }); // [B, T, heads, cols]
  const e = op('Reshape', [rows, 'shape_e']);
  const kv = op('Add', [op('MatMul', [e, 'kv_weight_t']), 'kv_bias']); // [B, T, width]
  const keys = op('Reshape', [op('Slice', [kv, 'keys_start', 'keys_end', 'last_axis']), 'shape_keys']);
  const value = op('Reshape', [op('Slice', [kv, 'keys_end', 'value_end', 'last_axis']), 'shape_value']);
  const dot = op('ReduceSum', [op('Mul', [rms(keys, 'norm1', 'gate_eps'), rms('hidden_states', 'norm2', 'gate_eps')]), 'last_axis'], { keepdims: 1 });
  const s = op('Mul', [dot, 'inv_sqrt_hidden']);
  const signed = op('Mul', [op('Sign', [s]), op('Sqrt', [op('Max', [op('Abs', [s]), 'clamp'])])]);
  const gated = op('Mul', [op('Sigmoid', [signed]), value]); // [B, T, hc, hidden]
  const normed = op('Reshape', [rms(gated, 'conv_norm', 'conv_eps'), 'shape_channels']);
  const conv = op('Conv', [op('Transpose', [normed], { perm: [0, 2, 1] }), 'conv_weight'], {
    group: channels,
    kernel_shape: [K],
    dilations: [dilation],
    pads: [(K - 1) * dilation, 0],
  });
  const y = op('Reshape', [op('Transpose', [conv], { perm: [0, 2, 1] }), 'shape_keys']);
  op('Add', [gated, op('Mul', [y, op('Sigmoid', [y])])], {}, 'output');

  const info = (name: string, elemType: number, dims: number[]): OnnxTypes.IValueInfoProto => ({
    name,
    type: { tensorType: { elemType, shape: { dim: dims.map((d) => ({ dimValue: d })) } } },
  });
  const rowsTotal = L.table.length / cols;
  const graph: OnnxTypes.IGraphProto = {
    name: 'engram',
    node: nodes,
    initializer: inits,
    input: [
      info('hidden_states', F, [batch, seqLen, hc, hidden]),
      info('row_ids', onnx.TensorProto.DataType.INT32, [batch, seqLen, heads]),
      info('table', F, [rowsTotal, cols]),
    ],
    output: [info('output', F, [batch, seqLen, hc, hidden])],
  };
  const model = onnx.ModelProto.create({ irVersion: 8, producerName: 'engram-kernels bench', opsetImport: [{ domain: '', version: 17 }], graph });
  return onnx.ModelProto.encode(model).finish();
}
