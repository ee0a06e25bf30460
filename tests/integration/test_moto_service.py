"""The chaos run's moto: DynamoDB transactions roll back exactly as moto's own, without copying whole tables."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from scripts.moto_service import COUNT_SECONDS, patched

pytestmark = pytest.mark.integration


@pytest.fixture
def table() -> Iterator[Any]:
    from moto import mock_aws

    with patched(), mock_aws():
        client = boto3.client("dynamodb")
        client.create_table(
            TableName="t",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
            AttributeDefinitions=[
                {"AttributeName": "pk", "AttributeType": "S"},
                {"AttributeName": "sk", "AttributeType": "S"},
            ],
            BillingMode="PAY_PER_REQUEST",
        )
        client.put_item(TableName="t", Item={"pk": {"S": "d"}, "sk": {"S": "health"}, "parked": {"N": "1"}})
        client.put_item(TableName="t", Item={"pk": {"S": "d"}, "sk": {"S": "parked#1"}})
        yield client


def items(client: Any) -> dict[str, dict[str, Any]]:
    return {item["sk"]["S"]: item for item in client.scan(TableName="t")["Items"]}


def update(condition: str) -> dict[str, Any]:
    return {
        "Update": {
            "TableName": "t",
            "Key": {"pk": {"S": "d"}, "sk": {"S": "health"}},
            "UpdateExpression": "ADD parked :n",
            "ConditionExpression": condition,
            "ExpressionAttributeValues": {":n": {"N": "-1"}},
        }
    }


def test_a_transaction_whose_first_write_fails_its_condition_leaves_the_second_unwritten(table: Any) -> None:
    before = items(table)
    put = {"Put": {"TableName": "t", "Item": {"pk": {"S": "d"}, "sk": {"S": "parked#2"}}}}
    with pytest.raises(ClientError, match="TransactionCanceled"):
        table.transact_write_items(TransactItems=[update("attribute_not_exists(pk)"), put])
    assert items(table) == before


def test_an_update_made_before_a_failed_condition_is_rolled_back(table: Any) -> None:
    before = items(table)
    delete = {
        "Delete": {
            "TableName": "t",
            "Key": {"pk": {"S": "d"}, "sk": {"S": "parked#9"}},
            "ConditionExpression": "attribute_exists(sk)",
        }
    }
    with pytest.raises(ClientError, match="TransactionCanceled"):
        table.transact_write_items(TransactItems=[update("attribute_exists(pk)"), delete])
    assert items(table) == before
    assert items(table)["health"]["parked"] == {"N": "1"}


def test_a_transaction_that_succeeds_writes_everything(table: Any) -> None:
    delete = {"Delete": {"TableName": "t", "Key": {"pk": {"S": "d"}, "sk": {"S": "parked#1"}}}}
    table.transact_write_items(TransactItems=[delete, update("attribute_exists(pk)")])
    assert list(items(table)) == ["health"]
    assert items(table)["health"]["parked"] == {"N": "0"}


def test_queue_counts_are_at_most_a_moment_old_and_messages_are_received_and_deleted() -> None:
    from moto import mock_aws

    with patched(), mock_aws():
        sqs = boto3.client("sqs")
        url = sqs.create_queue(QueueName="q")["QueueUrl"]
        sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": str(i), "MessageBody": f"m{i}"} for i in range(10)])
        time.sleep(COUNT_SECONDS * 1.5)
        counts = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        assert counts["ApproximateNumberOfMessages"] == "10"
        received = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=30)["Messages"]
        assert sorted(m["Body"] for m in received) == sorted(f"m{i}" for i in range(10))
        entries: Any = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(received)]
        sqs.delete_message_batch(QueueUrl=url, Entries=entries)
        time.sleep(COUNT_SECONDS * 1.5)
        counts = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        assert (counts["ApproximateNumberOfMessages"], counts["ApproximateNumberOfMessagesNotVisible"]) == ("0", "0")
        sqs.send_message(QueueUrl=url, MessageBody="later", DelaySeconds=60)
        time.sleep(COUNT_SECONDS * 1.5)
        counts = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        assert (counts["ApproximateNumberOfMessages"], counts["ApproximateNumberOfMessagesDelayed"]) == ("0", "1")
        assert "Messages" not in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)


def test_the_patches_are_undone_on_the_way_out() -> None:
    from moto import backends
    from moto.dynamodb.models import DynamoDBBackend
    from moto.sqs import models
    from moto.sqs.models import Queue
    from werkzeug.serving import WSGIRequestHandler

    def current() -> tuple[Any, ...]:
        return (
            DynamoDBBackend.transact_write_items,
            Queue.__dict__["approximate_number_of_messages"],
            models.unix_time_millis,  # type: ignore[attr-defined]
            backends.list_of_moto_modules,
            WSGIRequestHandler.log_request,
            Queue.delete_message,
        )

    before = current()
    with patched():
        assert all(now is not then for now, then in zip(current(), before, strict=True))
        assert "sqs" in backends.list_of_moto_modules()
        assert abs(models.unix_time_millis() - time.time() * 1000) < 1000  # type: ignore[attr-defined]
    assert current() == before


def test_a_rollback_keeps_what_another_request_wrote_meanwhile(table: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a transaction that fails its condition while another request writes an item of the same table (moto's
    # server answers requests in threads: here the other write lands as the transaction reads its first item)
    from moto.dynamodb.models import DynamoDBBackend

    read = DynamoDBBackend.get_item
    concurrent = {"pk": {"S": "d"}, "sk": {"S": "parked#other"}}

    def read_while_another_writes(self: Any, *args: Any, **kwargs: Any) -> Any:
        if not getattr(self, "_wrote", False):
            self._wrote = True
            self.put_item("t", concurrent)
        return read(self, *args, **kwargs)

    monkeypatch.setattr(DynamoDBBackend, "get_item", read_while_another_writes)
    put = {"Put": {"TableName": "t", "Item": {"pk": {"S": "d"}, "sk": {"S": "parked#2"}}}}
    with pytest.raises(ClientError, match="TransactionCanceled"):
        table.transact_write_items(TransactItems=[put, update("attribute_not_exists(pk)")])
    # Then the transaction's own put is undone and the other request's write is kept
    assert sorted(items(table)) == ["health", "parked#1", "parked#other"]
    assert items(table)["health"]["parked"] == {"N": "1"}


def test_a_write_to_an_item_a_failing_transaction_names_waits_for_it_and_is_kept(
    table: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given another request writing the very item a transaction names, from another thread, while the transaction
    # runs (moto's server answers each request in a thread of its own)
    import threading

    from moto.dynamodb.models import DynamoDBBackend

    read = DynamoDBBackend.get_item
    other = threading.Thread(
        target=lambda: table.put_item(
            TableName="t", Item={"pk": {"S": "d"}, "sk": {"S": "health"}, "parked": {"N": "7"}}
        )
    )

    def read_while_another_writes(self: Any, *args: Any, **kwargs: Any) -> Any:
        if not other.is_alive() and other.ident is None:
            other.start()
            other.join(0.3)  # without the lock, the other write lands here, before the rollback
        return read(self, *args, **kwargs)

    monkeypatch.setattr(DynamoDBBackend, "get_item", read_while_another_writes)
    put = {"Put": {"TableName": "t", "Item": {"pk": {"S": "d"}, "sk": {"S": "parked#2"}}}}
    # When the transaction fails its condition and rolls back
    with pytest.raises(ClientError, match="TransactionCanceled"):
        table.transact_write_items(TransactItems=[update("attribute_exists(pk)"), put, parked_1_absent()])
    other.join(5)
    # Then the other request's write, which waited, is what the item holds
    assert items(table)["health"]["parked"] == {"N": "7"}
    assert "parked#2" not in items(table)


def parked_1_absent() -> dict[str, Any]:
    return {
        "ConditionCheck": {
            "TableName": "t",
            "Key": {"pk": {"S": "d"}, "sk": {"S": "parked#1"}},
            "ConditionExpression": "attribute_not_exists(sk)",
        }
    }


def test_a_message_sent_between_two_deletes_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given two received messages, and, while the first is being deleted, another request (moto's server answers
    # each in a thread of its own) deleting the second and then sending a third
    import threading

    from moto import mock_aws
    from moto.sqs.models import Message

    with patched(), mock_aws():
        sqs = boto3.client("sqs", region_name="us-east-1")
        url = sqs.create_queue(QueueName="q")["QueueUrl"]
        sqs.send_message(QueueUrl=url, MessageBody="first")
        sqs.send_message(QueueUrl=url, MessageBody="second")
        received = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=60)["Messages"]
        handles = {m["Body"]: m["ReceiptHandle"] for m in received}
        looked_at = Message.had_receipt_handle
        calls: list[int] = []
        other: list[threading.Thread] = []

        def delete_second_and_send() -> None:
            sqs.delete_message(QueueUrl=url, ReceiptHandle=handles["second"])
            sqs.send_message(QueueUrl=url, MessageBody="third")

        def look_while_another_request_runs(self: Message, receipt_handle: str) -> bool:
            if threading.current_thread() is threading.main_thread():
                calls.append(1)
                if len(calls) == 2:  # the first look finds the message; the second is the walk that rebuilds
                    other.append(threading.Thread(target=delete_second_and_send))
                    other[0].start()
                    other[0].join(timeout=3)  # it runs now, unless this delete holds the queue's lock
            return bool(looked_at(self, receipt_handle))

        monkeypatch.setattr(Message, "had_receipt_handle", look_while_another_request_runs)
        # When the first message is deleted
        sqs.delete_message(QueueUrl=url, ReceiptHandle=handles["first"])
        other[0].join(timeout=5)
        monkeypatch.undo()
        # Then the third message is on the queue (and the second is gone)
        left = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=0).get("Messages", [])
        counts = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessagesNotVisible"])
    assert [m["Body"] for m in left] == ["third"]
    assert counts["Attributes"]["ApproximateNumberOfMessagesNotVisible"] == "0"
