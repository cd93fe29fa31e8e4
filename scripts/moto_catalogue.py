"""moto_server with the part of AWS's RDS engine catalogue paymig reads.

moto 5.2.5 does not implement DescribeDBEngineVersions (it answers 500) and
its DescribeOrderableDBInstanceOptions data stops at Aurora PostgreSQL 15.2
for db.serverless. AWS answers both for every version it offers; paymig
checks, before a restore, that the snapshot's engine version runs
Serverless v2 within the configured capacity and that dev's parameter-group
family is the version's. This adds a small copy of that catalogue (from the
Aurora User Guide: Serverless v2 from 13.6/14.3/15.2/16.1; a minimum of 0
ACUs from 13.15/14.12/15.7/16.3) and starts moto's own server.

It also deletes a cluster's automated snapshots with the cluster, as AWS's
DeleteDBCluster does by default (DeleteAutomatedBackups): moto keeps them,
and names them by the minute (`rds:<cluster>-YYYY-MM-DD-HH-MM`), so a
cluster deleted and restored again within one minute would meet its own
old automated snapshot (DBClusterSnapshotAlreadyExistsFault).

Run as `python moto_catalogue.py <moto_server arguments>`.
"""

import sys

ENGINE = "aurora-postgresql"
# version -> (parameter-group family, Serverless v2 (min, max) ACUs or None)
CATALOGUE = {
    "13.4": ("aurora-postgresql13", None),
    "13.15": ("aurora-postgresql13", (0.0, 128.0)),
    "14.6": ("aurora-postgresql14", (0.5, 128.0)),
    "14.12": ("aurora-postgresql14", (0.0, 128.0)),
    "15.2": ("aurora-postgresql15", (0.5, 128.0)),
    "15.4": ("aurora-postgresql15", (0.5, 128.0)),
    "15.7": ("aurora-postgresql15", (0.0, 128.0)),
    "16.1": ("aurora-postgresql16", (0.5, 128.0)),
    "16.4": ("aurora-postgresql16", (0.0, 256.0)),
}


def _version(version, family, serverless):
    v = {
        "Engine": ENGINE,
        "EngineVersion": version,
        "DBParameterGroupFamily": family,
        "DBEngineDescription": "Aurora (PostgreSQL)",
        "DBEngineVersionDescription": f"Aurora PostgreSQL (Compatible with PostgreSQL {version})",
        "Status": "available",
        "SupportedEngineModes": ["provisioned"],
    }
    if serverless:
        v["ServerlessV2FeaturesSupport"] = {"MinCapacity": serverless[0], "MaxCapacity": serverless[1]}
    return v


def describe_db_engine_versions(self):
    from moto.core.responses import ActionResult

    engine = self.params.get("Engine")
    version = self.params.get("EngineVersion")
    family = self.params.get("DBParameterGroupFamily")
    found = [
        _version(v, f, s)
        for v, (f, s) in CATALOGUE.items()
        if engine in (None, ENGINE) and version in (None, v) and family in (None, f)
    ]
    return ActionResult({"DBEngineVersions": found})


_orderable = None


def describe_orderable_db_instance_options(self, engine, engine_version):
    options = _orderable(self, engine, engine_version)
    entry = CATALOGUE.get(engine_version) if engine == ENGINE else None
    has_serverless = any(o.get("DBInstanceClass") == "db.serverless" for o in options)
    if entry and entry[1] and not has_serverless:
        options = options + [
            {
                "Engine": ENGINE,
                "EngineVersion": engine_version,
                "DBInstanceClass": "db.serverless",
                "LicenseModel": "postgresql-license",
                "StorageType": "aurora",
                "SupportsStorageEncryption": True,
                "SupportsIAMDatabaseAuthentication": True,
                "SupportsClusters": True,
            }
        ]
    if entry and not entry[1]:
        options = [o for o in options if o.get("DBInstanceClass") != "db.serverless"]
    return options


def _apply():
    global _orderable
    from moto.rds.models import RDSBackend
    from moto.rds.responses import RDSResponse

    _orderable = RDSBackend.describe_orderable_db_instance_options
    RDSResponse.describe_db_engine_versions = describe_db_engine_versions
    RDSBackend.describe_orderable_db_instance_options = describe_orderable_db_instance_options
    delete_cluster = RDSBackend.delete_db_cluster

    def delete_db_cluster(self, cluster_identifier, *args, **kwargs):
        cluster = delete_cluster(self, cluster_identifier, *args, **kwargs)
        prefix = f"rds:{cluster_identifier}-"
        for sid in [s for s in self.cluster_snapshots if s.startswith(prefix)]:
            if getattr(self.cluster_snapshots[sid], "snapshot_type", "automated") == "automated":
                del self.cluster_snapshots[sid]
        return cluster

    RDSBackend.delete_db_cluster = delete_db_cluster


class _PatchRdsOnImport:
    """moto loads a service's modules on its first request: patch RDS then,
    so servers that never see RDS start as fast as moto's own."""

    def find_spec(self, name, path, target=None):
        if name != "moto.rds.responses":
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None:
                break
        else:
            return None
        load = spec.loader.exec_module

        def exec_module(module):
            load(module)
            _apply()

        spec.loader.exec_module = exec_module
        return spec


if __name__ == "__main__":
    sys.meta_path.insert(0, _PatchRdsOnImport())
    from moto.server import main

    main(sys.argv[1:])
