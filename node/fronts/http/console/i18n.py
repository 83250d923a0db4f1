"""The console's words in Chinese and English, and which a request gets.

``?lang=zh|en`` chooses (and a logged-in session keeps the choice); otherwise the
browser's ``Accept-Language``: English when it prefers an ``en`` tag to any ``zh`` one,
Chinese otherwise (the node serves Chinese industry first). Every label is in ``WORDS``
in both languages; ``tr`` fails loudly on a key missing there, and a test renders every
view in both.
"""

from __future__ import annotations

from collections.abc import Mapping

from node.fronts.http.params import weighted

LANGS = ("zh", "en")

WORDS: dict[str, tuple[str, str]] = {
    "console": ("标识解析节点控制台", "Identifier node console"),
    "login": ("登录", "Log in"),
    "logout": ("退出", "Log out"),
    "identity": ("管理员身份", "Admin identity"),
    "identity_hint": (
        "索引:标识，例如 300:88.118.2/ADMIN",
        "index:handle, e.g. 300:88.118.2/ADMIN",
    ),
    "secret": ("密钥口令", "Secret"),
    "login_failed": ("登录失败", "Login failed"),
    "login_cert": ("使用客户端证书登录", "Log in with your client certificate"),
    "login_cert_hint": (
        "浏览器出示的证书须由本节点信任的 CA 签发，其公钥须为该管理员的 HS_PUBKEY 值。",
        "The certificate your browser presents must be signed by a CA this node trusts, "
        "and its key must be one of the admin's HS_PUBKEY values.",
    ),
    "no_role": (
        "该身份不是平台管理员、审核员或企业管理员",
        "This identity is no platform admin, auditor or enterprise admin",
    ),
    "session_over": ("会话已结束，请重新登录", "Your session has ended: log in again"),
    "csrf_refused": (
        "请求被拒绝：表单已过期或不是来自本站",
        "Request refused: the form is stale or did not come from this site",
    ),
    "denied": ("无权访问", "Not permitted"),
    "not_found": ("未找到", "Not found"),
    "unavailable": ("注册库暂时不可用，请稍后重试", "The registry is unavailable; retry later"),
    "error": ("出错了", "Something went wrong"),
    "dashboard": ("运行状态", "Health"),
    "enterprises": ("企业", "Enterprises"),
    "reviews": ("前缀审核", "Prefix reviews"),
    "keys": ("签名密钥与证书", "Signing keys and certificates"),
    "prefixes": ("前缀与标识", "Prefixes and identifiers"),
    "imports": ("批量导入", "Bulk import"),
    "ready": ("注册库可用", "Registry reachable"),
    "not_ready": ("注册库不可用", "Registry unreachable"),
    "qps": ("每秒请求数", "Requests per second"),
    "hit_ratio": ("缓存命中率", "Cache hit ratio"),
    "latency": ("延迟 p50 / p99（毫秒）", "Latency p50 / p99 (ms)"),
    "errors": ("每秒错误数", "Errors per second"),
    "registry": ("注册库连接", "Registry connections"),
    "upstream": ("上游查询（每秒）", "Upstream queries (per second)"),
    "in_use": ("使用中", "in use"),
    "waiting": ("等待", "waiting"),
    "failed": ("失败", "failed"),
    "no_samples": ("尚无采样，稍后刷新", "No samples yet: this page refreshes itself"),
    "span": ("最近", "last"),
    "seconds": ("秒", "s"),
    "name": ("名称", "Name"),
    "credit_code": ("统一社会信用代码", "Credit code"),
    "contact": ("联系人", "Contact"),
    "status": ("状态", "Status"),
    "created": ("创建时间", "Created"),
    "updated": ("更新时间", "Updated"),
    "prefix": ("前缀", "Prefix"),
    "enterprise": ("企业", "Enterprise"),
    "action": ("操作", "Action"),
    "reason": ("理由", "Reason"),
    "review_to": ("审核为", "Move to"),
    "reviewed": ("审核已记录", "Review recorded"),
    "credentials_once": (
        "新企业管理员的密钥只显示这一次，请立即妥善转交：",
        "The new enterprise admin's secret is shown this once: hand it over now:",
    ),
    "queue_empty": ("没有待审核的申请", "No applications wait for review"),
    "all_prefixes": ("全部前缀", "All prefixes"),
    "signing_off": (
        "本节点不签名记录（sign_records 关闭）",
        "This node does not sign records (sign_records is off)",
    ),
    "algorithm": ("算法", "Algorithm"),
    "key_id": ("密钥标识", "Key id"),
    "cert_index": ("证书索引", "Certificate index"),
    "cert_subject": ("证书主体", "Certificate subject"),
    "expires": ("到期时间", "Expires"),
    "days_left": ("剩余天数", "Days left"),
    "deployment_cert": ("顶级节点签发的证书", "Certificate issued by the top-level node"),
    "embedded_root": (
        "节点自有根密钥（自动续期）",
        "The node's own root key (renewed automatically)",
    ),
    "trust_roots": ("验证签名所用的信任根", "Trust roots for verifying signatures"),
    "identifiers": ("标识", "Identifiers"),
    "count": ("数量", "Count"),
    "browse": ("浏览", "Browse"),
    "search": ("搜索", "Search"),
    "template": ("数据模板", "Data template"),
    "field": ("字段", "Field"),
    "value": ("值", "Value"),
    "results": ("结果", "Results"),
    "none_found": ("没有找到", "None found"),
    "previous": ("上一页", "Previous"),
    "next": ("下一页", "Next"),
    "page": ("页", "page"),
    "new_record": ("新建标识", "New identifier"),
    "edit": ("编辑", "Edit"),
    "save": ("保存", "Save"),
    "handle": ("标识", "Handle"),
    "suffix": ("标识后缀", "Suffix"),
    "record": ("标识记录", "Record"),
    "index": ("索引", "Index"),
    "type": ("类型", "Type"),
    "data": ("数据", "Data"),
    "required": ("必填", "required"),
    "optional": ("选填", "optional"),
    "fix_fields": ("请更正标出的字段", "Correct the fields marked"),
    "saved": ("已保存", "Saved"),
    "write_refused": ("写入被拒绝", "The write was refused"),
    "choose_template": ("选择数据模板", "Choose a data template"),
    "no_template": (
        "该记录未引用数据模板，不能用表单编辑",
        "This record cites no data template: it cannot be edited with a form",
    ),
    "open_page": ("公开页面", "Public page"),
    "csv_file": ("CSV 文件", "CSV file"),
    "csv_hint": (
        "首行为列名：handle 及模板字段（字段键或中文名）",
        "First line: the column names, handle and the template's fields (keys or names)",
    ),
    "upload": ("上传并导入", "Upload and import"),
    "import_job": ("导入任务", "Import job"),
    "progress": ("进度", "Progress"),
    "running": ("进行中", "running"),
    "done": ("已完成", "done"),
    "import_failed": ("导入失败", "failed"),
    "import_interrupted": ("已中断", "interrupted"),
    "import_interrupted_why": (
        "运行此导入的进程已停止，导入未完成。请重新上传同一文件：已导入的行不会重复导入。",
        "The process running this import stopped before it finished. Upload the same file "
        "again: rows already in are not loaded twice.",
    ),
    "rows": ("行数", "Rows"),
    "loaded": ("已导入", "Loaded"),
    "existing": ("已存在", "Already there"),
    "rejected": ("被拒绝", "Rejected"),
    "rejects": ("被拒绝的行", "Rejected rows"),
    "line": ("行号", "Line"),
    "recent_imports": ("最近的导入", "Recent imports"),
    "too_large": ("文件过大", "The file is too large"),
    "too_many_rows": ("行数过多", "Too many rows"),
    "busy": ("导入任务过多，请稍后再试", "Too many imports are running: try again shortly"),
    "no_file": ("请选择 CSV 文件", "Choose a CSV file"),
    "roles": ("角色", "Roles"),
    "platform_admin": ("平台管理员", "platform admin"),
    "auditor": ("审核员", "auditor"),
    "enterprise_admin": ("企业管理员", "enterprise admin"),
    "language": ("English", "中文"),
}

STATUS_WORDS: dict[int, tuple[str, str]] = {
    0: ("已停用", "disabled"),
    1: ("已启用", "enabled"),
    2: ("待删除", "pending deletion"),
    3: ("已驳回", "rejected"),
    4: ("待审核", "awaiting review"),
    5: ("审核中", "under review"),
}


def tr(lang: str, key: str) -> str:
    zh, en = WORDS[key]
    return en if lang == "en" else zh


def status_word(lang: str, status: int) -> str:
    zh, en = STATUS_WORDS.get(status, (str(status), str(status)))
    return en if lang == "en" else zh


def from_accept_language(header: str) -> str:
    """``en`` when the browser ranks an English tag above every Chinese one."""
    best = {"zh": 0.0, "en": 0.0}
    for tag, q in weighted(header):
        base = tag.split("-")[0]
        if base in best:
            best[base] = max(best[base], q)
    return "en" if best["en"] > best["zh"] else "zh"


def choose(query: Mapping[str, str], accept_language: str, kept: str | None) -> str:
    asked = query.get("lang", "")
    if asked in LANGS:
        return asked
    return kept if kept in LANGS else from_accept_language(accept_language)
