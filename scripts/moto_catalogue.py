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

And its SSM DescribeParameters honours MaxResults (1 to 50, 10 when
absent) as AWS does, resuming each page where the last one stopped: moto
always answers ten per page and filters every parameter of the account
again for each page, so listing 2,000 parameters took it 200 pages of
4,000 filter checks each.

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


def describe_parameters(self):
    """SSM DescribeParameters with AWS's page size (MaxResults, 1-50) and a
    NextToken that says where the scan stopped (opaque on AWS too), so a
    listing reads each parameter once instead of once per page."""
    from moto.core.responses import ActionResult

    backend = self.ssm_backend
    page_size = max(1, min(50, int(self._get_param("MaxResults") or 10)))
    token = self._get_param("NextToken")
    start = int(token.strip() if hasattr(token, "strip") and token.strip() else token or 0)
    filters, parameter_filters = self._get_param("Filters"), self._get_param("ParameterFilters")
    if filters:
        # The legacy Filters: moto's own matching over the whole list.
        result = backend.describe_parameters(filters, parameter_filters)
        page, end = result[start : start + page_size], min(start + page_size, len(result))
        more = end < len(result)
    else:
        backend._validate_parameter_filters(parameter_filters, by_path=False)
        names = list(backend._parameters)
        page, end = [], start
        while end < len(names) and len(page) < page_size:
            parameter = backend.get_parameter(names[end])
            end += 1
            if parameter is not None and backend._match_filters(parameter, parameter_filters):
                page.append(parameter)
        more = end < len(names)
    response = {"Parameters": [p.describe_response_object(False) for p in page]}
    if more:
        response["NextToken"] = str(end)
    return ActionResult(response)


def _apply_ssm():
    from moto.ssm.responses import SimpleSystemManagerResponse

    SimpleSystemManagerResponse.describe_parameters = describe_parameters


# Module moto loads on a service's first request -> the patch to apply then.
PATCHES = {"moto.rds.responses": _apply, "moto.ssm.responses": _apply_ssm}


class _PatchOnImport:
    """moto loads a service's modules on its first request: patch RDS and
    SSM then, so servers that never see them start as fast as moto's own."""

    def find_spec(self, name, path, target=None):
        if name not in PATCHES:
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
            PATCHES[name]()

        spec.loader.exec_module = exec_module
        return spec


if __name__ == "__main__":
    sys.meta_path.insert(0, _PatchOnImport())
    from moto.server import main

    main(sys.argv[1:])
