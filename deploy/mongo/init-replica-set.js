// Idempotent MongoDB replica-set initiation, run with mongosh against one member:
//
//   RS_NAME=rs0 RS_MEMBERS=mongo1:27017,mongo2:27017,mongo3:27017 \
//     mongosh --quiet "mongodb://mongo1:27017/admin?directConnection=true" init-replica-set.js
//
// - If the set is already initiated, it changes nothing.
// - Otherwise it calls rs.initiate() with RS_MEMBERS (the first member gets a higher priority).
// - Either way it then waits (RS_WAIT_SECONDS, default 120) until the set has a primary, and
//   exits non-zero if none appears, so that dependants only start against a writable set.
//
// With access control (the Kubernetes StatefulSet runs mongod with --auth and --keyFile):
//   MONGO_ROOT_USERNAME, MONGO_ROOT_PASSWORD  the administrator mongod created at its first start;
//                                             the script signs in as it before anything else
//   APP_USERNAME, APP_PASSWORD, APP_DATABASE  lct's user: created on the primary (SCRAM-SHA-256,
//                                             readWrite on APP_DATABASE, stored in admin), or
//                                             given APP_PASSWORD again if it exists, so that a
//                                             changed password in the Secret takes effect
// Unset (the compose stack), the set runs without access control and no user is made.
//
// The same file is used by docker-compose.yml (deploy/mongo/) and by the Kubernetes Job
// (k8s/mongodb/); scripts/validate-deploy.sh checks that both copies are identical.

const rsName = process.env.RS_NAME || 'rs0';
const members = (process.env.RS_MEMBERS || 'mongo1:27017,mongo2:27017,mongo3:27017')
  .split(',')
  .map((host) => host.trim())
  .filter((host) => host.length > 0);
const waitMs = Number(process.env.RS_WAIT_SECONDS || '120') * 1000;
const rootUser = process.env.MONGO_ROOT_USERNAME || '';
const rootPassword = process.env.MONGO_ROOT_PASSWORD || '';
const appUser = process.env.APP_USERNAME || '';
const appPassword = process.env.APP_PASSWORD || '';
const appDatabase = process.env.APP_DATABASE || 'lct';

// Signs in as the administrator on `admin` (a database of the connection to use), if one is set.
function signIn(admin) {
  if (rootUser) {
    admin.auth(rootUser, rootPassword);
  }
}

const NOT_YET_INITIALIZED = 94;
const ALREADY_INITIALIZED = 23;

function replSetStatus() {
  try {
    return db.adminCommand({ replSetGetStatus: 1 });
  } catch (err) {
    return { ok: 0, code: err.code, codeName: err.codeName, errmsg: err.message };
  }
}

function waitForMembers() {
  // Every member must answer before rs.initiate() can include it.
  const deadline = Date.now() + waitMs;
  for (const host of members) {
    for (;;) {
      try {
        const conn = new Mongo(`mongodb://${host}/admin?directConnection=true`);
        conn.getDB('admin').runCommand({ ping: 1 });
        break;
      } catch (err) {
        if (Date.now() > deadline) {
          print(`member ${host} is not reachable: ${err.message}`);
          quit(1);
        }
        sleep(1000);
      }
    }
  }
}

signIn(db.getSiblingDB('admin'));

let status = replSetStatus();
if (status.ok === 1) {
  print(`replica set ${status.set} already initiated; nothing to do`);
} else if (status.code === NOT_YET_INITIALIZED) {
  waitForMembers();
  const config = {
    _id: rsName,
    members: members.map((host, i) => ({ _id: i, host, priority: i === 0 ? 2 : 1 })),
  };
  try {
    const res = rs.initiate(config);
    print(`rs.initiate: ${JSON.stringify(res)}`);
  } catch (err) {
    if (err.code !== ALREADY_INITIALIZED) {
      print(`rs.initiate failed: ${err.message}`);
      quit(1);
    }
    print('replica set was initiated concurrently; nothing to do');
  }
} else {
  print(`unexpected replSetGetStatus answer: ${JSON.stringify(status)}`);
  quit(1);
}

const deadline = Date.now() + waitMs;
for (;;) {
  status = replSetStatus();
  const primary = status.ok === 1 && (status.members || []).find((m) => m.stateStr === 'PRIMARY');
  if (primary) {
    print(`replica set ${status.set} has primary ${primary.name}`);
    break;
  }
  if (Date.now() > deadline) {
    print(`no primary after ${waitMs / 1000}s: ${JSON.stringify(status)}`);
    quit(1);
  }
  sleep(1000);
}

// lct's user, on the primary (the connection to the whole set finds it).
if (appUser) {
  if (!appPassword) {
    print('APP_USERNAME is set without APP_PASSWORD');
    quit(1);
  }
  const credentials = rootUser ? `${encodeURIComponent(rootUser)}:${encodeURIComponent(rootPassword)}@` : '';
  const admin = new Mongo(`mongodb://${credentials}${members.join(',')}/admin?replicaSet=${rsName}&authSource=admin`)
    .getDB('admin');
  const spec = {
    pwd: appPassword,
    roles: [{ role: 'readWrite', db: appDatabase }],
    mechanisms: ['SCRAM-SHA-256'],
  };
  if (admin.getUser(appUser)) {
    admin.updateUser(appUser, spec);
    print(`user ${appUser} exists; password and roles set again`);
  } else {
    admin.createUser({ user: appUser, ...spec });
    print(`user ${appUser} created with readWrite on ${appDatabase}`);
  }
}
