// BullMQ's side of lro-bench, on the same Redis as lro, under a key prefix of its own (its keys
// are deleted afterwards, and only those):
//
// - throughput: `--ops` noop jobs added one at a time by `--inflight` concurrent loops (as lro's
//   bench has 64 HTTP clients submitting), run by `--workers` worker processes; end to end is
//   from the first add to the last `completed` event seen by a QueueEvents listener (as lro's
//   bench counts done announcements). Completed jobs are kept (BullMQ's default), as lro keeps
//   its records. With `--bulk N`, the loops add N jobs at a time with `queue.addBulk`. CPU time (user + system, /proc/PID/stat) of the producer (this process), each
//   worker and `--redis-pid` over that window, per job;
// - cancel: `--cancels` long jobs running at once, each cancelled in turn through a Redis
//   pub/sub relay to `worker.cancelJob` (worker_bullmq.mjs): publish -> the processor's
//   AbortSignal fires, in ms.
//
// Prints one JSON object on stdout. Run through `run.sh`, which installs BullMQ.
import { fork } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { parseArgs } from 'node:util';
import { Queue, QueueEvents } from 'bullmq';
import IORedis from 'ioredis';

const { values: opt } = parseArgs({
  options: {
    ops: { type: 'string', default: '20000' },
    inflight: { type: 'string', default: '64' },
    workers: { type: 'string', default: '2' },
    concurrency: { type: 'string', default: '100' },
    cancels: { type: 'string', default: '200' },
    bulk: { type: 'string', default: '0' },
    'redis-url': { type: 'string', default: 'redis://127.0.0.1:6379' },
    'redis-pid': { type: 'string' },
  },
});
const [ops, inflight, workers, concurrency, cancels, bulk] = [
  'ops',
  'inflight',
  'workers',
  'concurrency',
  'cancels',
  'bulk',
].map((k) => Number(opt[k]));
const url = opt['redis-url'];
const prefix = `bullbench${randomBytes(6).toString('hex')}`;
const queueName = 'bench';
const here = new URL('.', import.meta.url).pathname;
const version = createRequire(import.meta.url)('bullmq/package.json').version;
const now = () => Number(process.hrtime.bigint()) / 1e6;

/** utime + stime of a process so far, in clock ticks (USER_HZ, 100 per second). */
function ticks(pid) {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(')').pop().trim().split(/\s+/);
  return Number(fields[11]) + Number(fields[12]);
}

/** Forks the workers; resolves once each is ready. Messages other than `ready` go to `onMessage`. */
async function startWorkers(onMessage) {
  const children = [];
  for (let i = 0; i < workers; i++) {
    const child = fork(`${here}/worker_bullmq.mjs`, [url, prefix, queueName, String(concurrency)]);
    await new Promise((resolve, reject) => {
      child.once('exit', (code) => reject(new Error(`worker exited with ${code}`)));
      child.on('message', (m) => (m.ready ? resolve() : onMessage(m)));
    });
    children.push(child);
  }
  return children;
}

async function throughput(queue, events, children) {
  let completed = 0;
  let allDone;
  const done = new Promise((resolve) => (allDone = resolve));
  events.on('completed', () => {
    if (++completed === ops) allDone();
  });
  const pids = { producer: process.pid };
  children.forEach((c, i) => (pids[`worker ${i + 1}`] = c.pid));
  if (opt['redis-pid']) pids['redis-server'] = Number(opt['redis-pid']);
  const before = Object.fromEntries(Object.entries(pids).map(([k, p]) => [k, ticks(p)]));
  const started = now();
  let left = ops;
  await Promise.all(
    Array.from({ length: inflight }, async () => {
      while (left > 0) {
        const n = Math.min(left, Math.max(bulk, 1));
        left -= n;
        if (bulk > 0) await queue.addBulk(Array.from({ length: n }, () => ({ name: 'noop', data: {} })));
        else await queue.add('noop', {});
      }
    }),
  );
  const submitMs = now() - started;
  await done;
  const e2eMs = now() - started;
  const cpu = Object.fromEntries(
    Object.entries(pids).map(([k, p]) => [k, ((ticks(p) - before[k]) * 1e4) / ops]),
  );
  return {
    ops,
    submits_per_s: (ops * 1000) / submitMs,
    e2e_per_s: (ops * 1000) / e2eMs,
    cpu_us_per_job: cpu,
  };
}

async function cancel(queue, children, messages) {
  children.forEach((c) => c.send({ concurrency: Math.max(concurrency, cancels) }));
  const jobs = [];
  for (let i = 0; i < cancels; i++) jobs.push((await queue.add('wait', {})).id);
  const deadline = now() + 60_000;
  while (messages.started.size < cancels) {
    if (now() > deadline) throw new Error(`only ${messages.started.size} of ${cancels} jobs running`);
    await new Promise((r) => setTimeout(r, 10));
  }
  const publisher = new IORedis(url);
  const samples = [];
  for (const id of jobs) {
    const seen = new Promise((resolve) => messages.waiters.set(id, resolve));
    const sent = now();
    await publisher.publish(`${prefix}:cancel`, id);
    const at = await Promise.race([seen, new Promise((r) => setTimeout(() => r(null), 10_000).unref())]);
    if (at === null) throw new Error(`job ${id} not aborted 10 s after its cancel`);
    samples.push(at - sent);
  }
  publisher.disconnect();
  samples.sort((a, b) => a - b);
  const q = (p) => samples[Math.min(samples.length - 1, Math.round(p * (samples.length - 1)))];
  return { n: samples.length, p50_ms: q(0.5), p99_ms: q(0.99), min_ms: samples[0], max_ms: samples.at(-1) };
}

/** Deletes this run's keys: those under its own prefix, nothing else. */
async function cleanUp(redis) {
  let cursor = '0';
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 1000);
    if (keys.length) await redis.unlink(...keys);
    cursor = next;
  } while (cursor !== '0');
}

const redis = new IORedis(url, { maxRetriesPerRequest: null });
// The events stream keeps every event of the run (BullMQ trims it to 10,000 by default, which a
// fast producer outruns, so QueueEvents would miss `completed` events and never see the end).
const queue = new Queue(queueName, { connection: redis, prefix, streams: { events: { maxLen: 10 * ops + 1000 } } });
// BullMQ does not close connections it was given: each is disconnected below.
const eventsRedis = new IORedis(url, { maxRetriesPerRequest: null });
const events = new QueueEvents(queueName, { connection: eventsRedis, prefix });
const messages = { started: new Set(), waiters: new Map() };
let children = [];
let out;
try {
  await events.waitUntilReady();
  children = await startWorkers((m) => {
    if (m.started) messages.started.add(m.started);
    if (m.aborted) messages.waiters.get(m.aborted)?.(m.at);
  });
  // Warm-up: one job through, so every connection is open and the scripts are loaded.
  const warm = await queue.add('noop', {});
  await warm.waitUntilFinished(events, 30_000);
  const t = await throughput(queue, events, children);
  const c = cancels > 0 ? await cancel(queue, children, messages) : null;
  out = { bullmq: version, prefix, workers, concurrency, inflight, bulk, throughput: t, cancel: c };
} finally {
  await Promise.all(
    children.map((c) => new Promise((resolve) => {
      c.once('exit', resolve);
      c.send({ close: true });
      setTimeout(() => c.kill('SIGKILL'), 10_000).unref();
    })),
  );
  await events.close();
  await queue.close();
  await cleanUp(redis);
  redis.disconnect();
  eventsRedis.disconnect();
}
console.log(JSON.stringify(out));
