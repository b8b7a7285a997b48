'use strict';
/*
 * The stand-in Travellr backend API (Node.js, Express, the official mongodb driver, node-redis),
 * for the sandbox, the Compose images and the tests.
 *
 * Environment:
 *   HOST (127.0.0.1), PORT (5000), MONGO_URI or MONGODB_URI (mongodb://127.0.0.1:27017/travellr),
 *   REDIS_URL (redis://127.0.0.1:6379/0), LOG_DIR (./logs), BACKEND_VERSION (v1),
 *   RATE_LIMIT_PER_MIN (600), JWT_SECRET (a per-process random one),
 *   BACKEND_HEALTH_FAIL=1      health answers 500: a broken release
 *   BACKEND_ERROR_PCT=N        a healthy release that answers N % of /api/* but /api/health with
 *                              500, every (100/N)-th request, logged like any request
 *   BACKEND_LEAK_KB_PER_REQ=N  every request keeps N KB reachable forever (a RequestTrace in
 *                              a module-level list): a memory leak for the troubleshooting paths
 *
 * Endpoints:
 *   GET  /api/health                      200 ok / 503 degraded / 503 maintenance (not rate limited)
 *   GET  /api/search?destination=X&page=N cached as search:<destination>:<page>, 300 s
 *   GET  /api/trips/popular               cached as trips:popular, 600 s
 *   GET  /api/trips/<id>                  cached as trip:<id>, 600 s
 *   GET  /api/bookings?tripId=..&status=  not cached; the seed leaves it without an index
 *   POST /api/auth/login {email,password} 200 / 401 (failures logged)
 *   GET  /api/debug/error                 logs an ERROR and answers 500
 *   GET  /api/debug/cpu?ms=N              burns N ms (default 200, at most 5000) of CPU in
 *                                         rankItineraries(): a hot function for a CPU profile
 * Cached endpoints answer with X-Cache: HIT or MISS.
 *
 * Contracts with travellr-ops:
 *   Redis key `travellr:maintenance` (a JSON string {"message","by","reason","since","until"}):
 *   while it exists every endpoint answers 503 {"status":"maintenance","message":...}.
 *   Redis key `ratelimit:<ip>:<minute>` counts requests per client per minute; over the limit: 429.
 *   LOG_DIR/access.log is in combined log format; LOG_DIR/app.log (also stdout) has lines
 *   `2026-11-28T04:12:00.123Z LEVEL message key=value ...`, LEVEL one of INFO WARN ERROR.
 *   SIGUSR1 opens the V8 inspector on 127.0.0.1 (Node's own handler): `service profile`.
 */

const crypto = require('crypto');
const fs = require('fs');
const path = require('path');
const express = require('express');
const jwt = require('jsonwebtoken');
const _ = require('lodash');
const minimist = require('minimist');
const mkdirp = require('mkdirp');
const { MongoClient, MongoError, ObjectId } = require('mongodb');
const { createClient } = require('redis');

const MAINTENANCE_KEY = 'travellr:maintenance';
const PAGE_SIZE = 20;
const SEARCH_TTL = 300;
const TRIP_TTL = 600;
const REDIS_TIMEOUT_MS = 1000;

function config(env) {
  return {
    host: env.HOST || '127.0.0.1',
    port: Number(env.PORT || 5000),
    mongoUri: env.MONGO_URI || env.MONGODB_URI || 'mongodb://127.0.0.1:27017/travellr',
    redisUrl: env.REDIS_URL || 'redis://127.0.0.1:6379/0',
    logDir: env.LOG_DIR || 'logs',
    version: env.BACKEND_VERSION || 'v1',
    rateLimit: Number(env.RATE_LIMIT_PER_MIN || 600),
    healthFail: env.BACKEND_HEALTH_FAIL === '1',
    errorPct: Number(env.BACKEND_ERROR_PCT || 0),
    leakKbPerRequest: Number(env.BACKEND_LEAK_KB_PER_REQ || 0),
    jwtSecret: env.JWT_SECRET || crypto.randomBytes(32).toString('hex'),
  };
}

// ------------------------------------------------------------------------------------- logs
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
const pad = (n, width = 2) => String(n).padStart(width, '0');

class Logs {
  constructor(logDir) {
    mkdirp.sync(logDir);
    // Written synchronously: a line is on disk before the answer leaves, as tests and the
    // deploy gate read the logs right after a request.
    this.access = fs.openSync(path.join(logDir, 'access.log'), 'a');
    this.appFd = fs.openSync(path.join(logDir, 'app.log'), 'a');
  }

  app(level, message, fields = {}) {
    const parts = [new Date().toISOString(), level, message];
    for (const [key, value] of Object.entries(fields)) {
      let text = value === null || value === undefined ? 'None' : String(value);
      if (!text || /[ "=]/.test(text)) text = JSON.stringify(text);
      parts.push(`${key}=${text}`);
    }
    const line = parts.join(' ') + '\n';
    fs.writeSync(this.appFd, line);
    fs.writeSync(1, line);
  }

  accessLine(ip, requestLine, status, size, referer, agent) {
    const d = new Date();
    const stamp =
      `${pad(d.getUTCDate())}/${MONTHS[d.getUTCMonth()]}/${d.getUTCFullYear()}:` +
      `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())} +0000`;
    const quoted = (text) => String(text).replace(/"/g, '%22');
    fs.writeSync(
      this.access,
      `${ip} - - [${stamp}] "${quoted(requestLine)}" ${status} ${size || '-'} ` +
        `"${quoted(referer)}" "${quoted(agent)}"\n`,
    );
  }
}

// --------------------------------------------------------------------------- the troubles
/** What BACKEND_LEAK_KB_PER_REQ keeps per request: about `kb` KB of JS heap (a string of its
 * own), never freed. */
class RequestTrace {
  constructor(method, url, kb) {
    this.method = method;
    this.url = url;
    this.at = Date.now();
    this.payload = crypto.randomBytes(kb * 512).toString('hex');
  }
}
const requestTraces = [];

/** One batch of a deliberately hot, pure-JS computation: scores made-up itineraries. */
function rankItineraries(state) {
  for (let i = 0; i < 20000; i++) {
    const score = Math.sqrt((i * 2654435761) % 1000003) * Math.sin(i + state.rounds);
    if (score > state.best) state.best = score;
  }
  state.rounds += 1;
}

/** GET /api/debug/cpu?ms=N: N ms of rankItineraries, in batches run back to back. Short calls
 * (not one long loop) because V8's profiler cannot name code compiled on-stack before a
 * profile started, and a profile attaches to a process that is already hot. */
function burnCpu(req, res) {
  const ms = Math.min(5000, Math.max(1, Number(req.query.ms) || 200));
  const until = Date.now() + ms;
  const state = { best: 0, rounds: 0 };
  while (Date.now() < until) rankItineraries(state);
  res.reply(200, { ms, rounds: state.rounds, best: Math.round(state.best * 1000) / 1000 });
}

function checkPassword(password, stored) {
  const parts = String(stored || '').split('$');
  if (parts.length !== 4) return Promise.resolve(false);
  const [, iterations, salt, digest] = parts;
  return new Promise((resolve) => {
    crypto.pbkdf2(password, Buffer.from(salt, 'hex'), Number(iterations), 32, 'sha256', (err, got) =>
      resolve(!err && got.toString('hex') === digest),
    );
  });
}

// ------------------------------------------------------------------------------------ the app
class Backend {
  constructor(cfg) {
    this.cfg = cfg;
    this.logs = new Logs(cfg.logDir);
    this.mongo = new MongoClient(cfg.mongoUri, {
      serverSelectionTimeoutMS: 2000,
      connectTimeoutMS: 2000,
      socketTimeoutMS: 10000,
      // plain polling hello: the testbed's MongoDB-wire server answers the streaming
      // (awaitable) hello in a way the driver reads as leaving the replica set
      serverMonitoringMode: 'poll',
    });
    this.db = this.mongo.db();
    this.redis = createClient({
      url: cfg.redisUrl,
      // Fail fast while Redis is away (no offline queue) and reconnect soon after it is back:
      // the cache is an optimisation, never a reason to wait.
      disableOfflineQueue: true,
      socket: { connectTimeout: REDIS_TIMEOUT_MS, reconnectStrategy: () => 50 },
    });
    this.redis.on('error', () => {}); // reported where a call fails, not per reconnect attempt
    this.redis.connect().catch(() => {});
    this.requests = 0;
  }

  async redisCall(fn, waitReadyMs = 0) {
    if (!this.redis.isReady && waitReadyMs > 0) {
      await new Promise((resolve) => {
        const timer = setTimeout(done, waitReadyMs);
        function done() {
          clearTimeout(timer);
          resolve();
        }
        this.redis.once('ready', done);
      });
    }
    let timer;
    const timeout = new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error('Timeout reading from Redis')), REDIS_TIMEOUT_MS);
    });
    try {
      return await Promise.race([fn(this.redis), timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Whether this /api/* request is one of the BACKEND_ERROR_PCT share that fails: spread
   * evenly (request n fails when n * pct crosses a multiple of 100). */
  injectedError() {
    const pct = this.cfg.errorPct;
    if (!(pct > 0)) return false;
    const n = this.requests++;
    return Math.floor(((n + 1) * pct) / 100) > Math.floor((n * pct) / 100);
  }

  async maintenance() {
    let raw;
    try {
      raw = await this.redisCall((r) => r.get(MAINTENANCE_KEY));
    } catch {
      return null; // no Redis, no flag: the health check reports Redis itself
    }
    if (raw === null || raw === undefined) return null;
    try {
      const flag = JSON.parse(raw);
      return flag && typeof flag === 'object' && !Array.isArray(flag) ? flag : {};
    } catch {
      return {};
    }
  }

  async overRateLimit(ip) {
    const key = `ratelimit:${ip}:${Math.floor(Date.now() / 60000)}`;
    let count;
    try {
      [count] = await this.redisCall((r) => r.multi().incr(key).expire(key, 120).exec());
    } catch {
      return false; // fail open: a Redis outage must not take the API down
    }
    return Number(count) > this.cfg.rateLimit;
  }

  /** [status, body, 'HIT'|'MISS']; a Redis failure degrades to MISS, never to an error. */
  async cached(key, ttl, compute) {
    let hit = null;
    try {
      hit = await this.redisCall((r) => r.get(key));
    } catch (err) {
      this.logs.app('WARN', 'cache unavailable', { key, error: err.name || 'Error' });
    }
    if (hit !== null && hit !== undefined) return [200, hit, 'HIT'];
    const [status, body] = await compute();
    if (status === 200) {
      await this.redisCall((r) => r.set(key, body, { EX: ttl })).catch(() => {});
    }
    return [status, body, 'MISS'];
  }

  async health() {
    const checks = {};
    let started = process.hrtime.bigint();
    const ms = () => Math.round(Number(process.hrtime.bigint() - started) / 1e4) / 100;
    try {
      await this.db.admin().command({ ping: 1 });
      checks.mongodb = { ok: true };
    } catch (err) {
      checks.mongodb = { ok: false, error: String(err.message).split(',')[0].slice(0, 200) };
    }
    checks.mongodb.latency_ms = ms();
    started = process.hrtime.bigint();
    try {
      await this.redisCall((r) => r.ping(), 500);
      checks.redis = { ok: true };
    } catch (err) {
      checks.redis = { ok: false, error: String(err.message).slice(0, 200) };
    }
    checks.redis.latency_ms = ms();
    const ok = Object.values(checks).every((c) => c.ok);
    const body = { status: ok ? 'ok' : 'degraded', version: this.cfg.version, checks };
    if (this.cfg.healthFail) {
      body.status = 'error';
      body.error = 'BACKEND_HEALTH_FAIL is set';
      return [500, body];
    }
    if (!ok) {
      const failing = Object.keys(checks).filter((k) => !checks[k].ok);
      this.logs.app('WARN', 'health degraded', { failing: failing.join(',') });
    }
    return [ok ? 200 : 503, body];
  }

  async search(destination, page) {
    const results = await this.db
      .collection('trips')
      .find({ destination })
      .sort({ startDate: 1 })
      .skip(page * PAGE_SIZE)
      .limit(PAGE_SIZE)
      .toArray();
    return [200, JSON.stringify({ destination, page, results })];
  }

  async trip(id) {
    const doc = await this.db.collection('trips').findOne({ _id: id });
    return doc ? [200, JSON.stringify(doc)] : [404, JSON.stringify({ error: 'trip not found' })];
  }

  async popular() {
    const results = await this.db
      .collection('trips')
      .find()
      .sort({ rating: -1, _id: 1 })
      .limit(10)
      .toArray();
    return [200, JSON.stringify({ results })];
  }

  async bookings(tripId, status) {
    const query = { tripId };
    if (status) query.status = status;
    const results = await this.db.collection('bookings').find(query).limit(100).toArray();
    return [200, JSON.stringify({ tripId, status: status || null, results })];
  }

  async login(email, password, ip) {
    const user = await this.db.collection('users').findOne({ email });
    if (!user || !(await checkPassword(password, user.passwordHash))) {
      this.logs.app('WARN', 'login failed', {
        email,
        ip,
        reason: user ? 'bad password' : 'unknown user',
      });
      return [401, { error: 'invalid email or password' }];
    }
    this.logs.app('INFO', 'login ok', { email, ip });
    const token = jwt.sign({ sub: String(user._id), email }, this.cfg.jwtSecret, { expiresIn: '1h' });
    return [200, { token, user: { id: String(user._id), email, ..._.pick({ name: null, ...user }, 'name') } }];
  }
}

// ------------------------------------------------------------------------------- the routes
function objectId(text) {
  return ObjectId.isValid(text) && /^[0-9a-fA-F]{24}$/.test(text) ? new ObjectId(text) : null;
}

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

function buildApp(backend) {
  const { cfg, logs } = backend;
  const app = express();
  app.disable('x-powered-by');
  app.disable('etag');
  app.set('trust proxy', false);

  // The API sits behind a proxy in production; trust its X-Forwarded-For.
  const clientIp = (req) =>
    String(req.headers['x-forwarded-for'] || '').split(',')[0].trim() || req.socket.remoteAddress;

  app.use((req, res, next) => {
    req.clientIp = clientIp(req);
    res.reply = (status, body, cache) => {
      const data = Buffer.from(typeof body === 'string' ? body : JSON.stringify(body));
      res.status(status);
      res.set('Content-Type', 'application/json');
      res.set('Content-Length', String(data.length));
      if (cache) res.set('X-Cache', cache);
      if (status === 429) res.set('Retry-After', '60');
      logs.accessLine(
        req.clientIp,
        `${req.method} ${req.originalUrl} HTTP/${req.httpVersion}`,
        status,
        data.length,
        req.headers.referer || '-',
        req.headers['user-agent'] || '-',
      );
      res.end(req.method === 'HEAD' ? undefined : data);
    };
    if (cfg.leakKbPerRequest > 0) {
      requestTraces.push(new RequestTrace(req.method, req.originalUrl, cfg.leakKbPerRequest));
    }
    next();
  });

  const wrap = (handler) => (req, res, next) => Promise.resolve(handler(req, res)).catch(next);

  app.use((req, res, next) => {
    (async () => {
      const flag = await backend.maintenance();
      if (flag !== null) {
        return res.reply(503, {
          status: 'maintenance',
          message: flag.message || 'down for maintenance',
          until: flag.until ?? null,
        });
      }
      // Health is exempt: a monitor polling it must never be told 429.
      if (req.path !== '/api/health' && (await backend.overRateLimit(req.clientIp))) {
        logs.app('WARN', 'rate limit exceeded', {
          ip: req.clientIp,
          path: req.originalUrl,
          limit: cfg.rateLimit,
        });
        return res.reply(429, { error: 'rate limit exceeded' });
      }
      if (req.path.startsWith('/api/') && req.path !== '/api/health' && backend.injectedError()) {
        logs.app('ERROR', 'injected failure', { path: req.originalUrl, version: cfg.version });
        return res.reply(500, { error: 'internal server error' });
      }
      return next();
    })().catch(next);
  });

  app.post(
    '/api/auth/login',
    wrap(async (req, res) => {
      let email;
      let password;
      try {
        const raw = await readBody(req);
        const payload = JSON.parse(raw.length ? raw.toString('utf8') : '{}');
        if (!payload || payload.email === undefined || payload.password === undefined) {
          throw new Error('missing field');
        }
        email = String(payload.email);
        password = String(payload.password);
      } catch {
        return res.reply(400, { error: 'expected JSON {email, password}' });
      }
      const [status, body] = await backend.login(email, password, req.clientIp);
      return res.reply(status, body);
    }),
  );
  app.use((req, res, next) =>
    req.method === 'GET' || req.method === 'HEAD'
      ? next()
      : res.reply(405, { error: 'method not allowed' }),
  );

  app.get(
    '/api/health',
    wrap(async (req, res) => {
      const [status, body] = await backend.health();
      res.reply(status, body);
    }),
  );
  app.get(
    '/api/search',
    wrap(async (req, res) => {
      const destination = String(req.query.destination || '');
      if (!destination) return res.reply(400, { error: 'destination is required' });
      const rawPage = String(req.query.page ?? '0');
      if (!/^\s*[+-]?\d+\s*$/.test(rawPage)) return res.reply(400, { error: 'page must be a number' });
      const p = Math.max(0, Number(rawPage));
      const [status, body, cache] = await backend.cached(`search:${destination}:${p}`, SEARCH_TTL, () =>
        backend.search(destination, p),
      );
      return res.reply(status, body, cache);
    }),
  );
  app.get(
    '/api/trips/popular',
    wrap(async (req, res) => {
      const [status, body, cache] = await backend.cached('trips:popular', TRIP_TTL, () =>
        backend.popular(),
      );
      res.reply(status, body, cache);
    }),
  );
  app.get(
    '/api/trips/:id',
    wrap(async (req, res) => {
      const id = objectId(req.params.id);
      if (!id) return res.reply(404, { error: 'trip not found' });
      const [status, body, cache] = await backend.cached(`trip:${req.params.id}`, TRIP_TTL, () =>
        backend.trip(id),
      );
      return res.reply(status, body, cache);
    }),
  );
  app.get(
    '/api/bookings',
    wrap(async (req, res) => {
      const tripId = objectId(String(req.query.tripId || ''));
      if (!tripId) return res.reply(400, { error: 'tripId must be an ObjectId' });
      const [status, body] = await backend.bookings(tripId, req.query.status && String(req.query.status));
      return res.reply(status, body);
    }),
  );
  app.get('/api/debug/error', (req, res) => {
    logs.app('ERROR', 'debug error requested', { ip: req.clientIp, path: req.path });
    res.reply(500, { error: 'internal server error (debug)' });
  });
  app.get('/api/debug/cpu', burnCpu);
  app.use((req, res) => res.reply(404, { error: 'not found' }));

  // eslint-disable-next-line no-unused-vars
  app.use((err, req, res, next) => {
    if (err instanceof MongoError) {
      logs.app('ERROR', 'database error', { path: req.originalUrl, error: String(err.message).slice(0, 200) });
      return res.reply(503, { error: 'database unavailable' });
    }
    logs.app('ERROR', 'unhandled exception', {
      path: req.originalUrl,
      error: `${err.name}: ${err.message}`,
    });
    process.stderr.write(`${err.stack}\n`);
    return res.reply(500, { error: 'internal server error' });
  });
  return app;
}

function main() {
  // `node server.js --port 5001` overrides PORT (handy beside a running sandbox)
  const argv = minimist(process.argv.slice(2), { string: ['port', 'host'] });
  const cfg = config({ ...process.env, ..._.pickBy({ PORT: argv.port, HOST: argv.host }) });
  const backend = new Backend(cfg);
  const server = buildApp(backend).listen(cfg.port, cfg.host, () => {
    backend.logs.app('INFO', 'backend started', {
      host: cfg.host,
      port: cfg.port,
      version: cfg.version,
      pid: process.pid,
    });
  });
  server.keepAliveTimeout = 5000;
  const stop = (signal) => {
    backend.logs.app('INFO', 'backend stopping', { signal });
    server.close();
    server.closeAllConnections();
    Promise.allSettled([backend.mongo.close(), backend.redis.disconnect()]).then(() => process.exit(0));
    setTimeout(() => process.exit(0), 3000).unref();
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

main();
